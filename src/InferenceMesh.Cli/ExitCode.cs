namespace InferenceMesh.Cli;

/// <summary>Process exit codes of <c>inferencemesh</c>, by kind of failure (the README has the table).</summary>
public enum ExitCode
{
    Ok = 0,

    /// <summary>An unexpected failure (a bug or the environment); details with <c>--verbose</c>.</summary>
    Failure = 1,

    /// <summary>Bad input: a file, option or prompt the command cannot use; the message says which.</summary>
    BadInput = 2,

    /// <summary>The mesh cannot serve: no bootstrap peer answered, or no reachable server covers some blocks; the message says which.</summary>
    MeshUnavailable = 3,

    /// <summary>Something the command waited for did not happen in time (a node not ready, blocks never announced).</summary>
    Timeout = 4,

    /// <summary>Stopped by SIGINT/SIGTERM or Ctrl+C.</summary>
    Cancelled = 130,
}
