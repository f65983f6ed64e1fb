namespace InferenceMesh.Cli;

/// <summary>A console over given writers, for tests and embedding.</summary>
public sealed class WriterCliConsole(TextWriter output, TextWriter error) : ICliConsole
{
    public TextWriter Out => output;
    public TextWriter Error => error;
    public bool IsInteractive => false;
}
