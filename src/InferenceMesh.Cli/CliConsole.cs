namespace InferenceMesh.Cli;

/// <summary>Where a command writes: results to <see cref="Out"/>, diagnostics and progress to <see cref="Error"/>.</summary>
public interface ICliConsole
{
    TextWriter Out { get; }
    TextWriter Error { get; }
    /// <summary>True when a person is watching a terminal (progress displays allowed, never prompts otherwise).</summary>
    bool IsInteractive { get; }
}

/// <summary>The process's own console.</summary>
public sealed class SystemCliConsole : ICliConsole
{
    public TextWriter Out => Console.Out;
    public TextWriter Error => Console.Error;
    public bool IsInteractive => !Console.IsOutputRedirected && !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("CI") is null;
}

/// <summary>A console over given writers, for tests and embedding.</summary>
public sealed class WriterCliConsole(TextWriter output, TextWriter error) : ICliConsole
{
    public TextWriter Out => output;
    public TextWriter Error => error;
    public bool IsInteractive => false;
}
