namespace InferenceMesh.Cli;

/// <summary>The process's own console.</summary>
public sealed class SystemCliConsole : ICliConsole
{
    public TextWriter Out => Console.Out;
    public TextWriter Error => Console.Error;
    public bool IsInteractive => !Console.IsOutputRedirected && !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("CI") is null;
}
