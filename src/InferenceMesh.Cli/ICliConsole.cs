namespace InferenceMesh.Cli;

/// <summary>Where a command writes: results to <see cref="Out"/>, diagnostics and progress to <see cref="Error"/>.</summary>
public interface ICliConsole
{
    TextWriter Out { get; }
    TextWriter Error { get; }
    /// <summary>True when a person is watching a terminal (progress displays allowed, never prompts otherwise).</summary>
    bool IsInteractive { get; }
}
