namespace InferenceMesh.Cli;

/// <summary>Process exit codes of <c>inferencemesh</c>.</summary>
public enum ExitCode
{
    Ok = 0,
    /// <summary>An unexpected failure (a bug or the environment); details with <c>--verbose</c>.</summary>
    Failure = 1,
    /// <summary>Bad input: a file, option or prompt the command cannot use; the message says which.</summary>
    BadInput = 2,
    /// <summary>Stopped by SIGINT/SIGTERM or Ctrl+C.</summary>
    Cancelled = 130,
}
