namespace InferenceMesh.Cli.Swarm;

/// <summary>
/// What <see cref="SoakRunner.RunAsync"/> runs: a local swarm under churn (a random node SIGKILLed and restarted
/// every <see cref="KillPeriod"/>) with <see cref="Sessions"/> generations kept going at once.
/// </summary>
/// <param name="Model">Imported model directory (model.onnx), split one block per stage into the state folder.</param>
/// <param name="State">Folder for the swarm's state, keys and node logs (created; left in place for reading the logs).</param>
public sealed record SoakOptions(string Model, string State)
{
    /// <summary>Serving nodes (besides the bootstrap node).</summary>
    public int Nodes { get; init; } = 5;

    /// <summary>Servers per block; 2 leaves every block served while one node is down.</summary>
    public int Replicas { get; init; } = 2;

    /// <summary>Generations kept running at once, each in its own loop.</summary>
    public int Sessions { get; init; } = 32;

    /// <summary>How long new generations are started; those running at the end are let finish.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Time between kills; each kill picks a serving node at random (from <see cref="Seed"/>), SIGKILLs it and restarts it.</summary>
    public TimeSpan KillPeriod { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Time between samples of every process's RSS, open files and threads.</summary>
    public TimeSpan SampleInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Samples of a process younger than this (since its real start) are left out of the growth check: startup, JIT,
    /// first pools, and the code a node first loads 60 s in, at its first re-announce (11 more open files on the bootstrap).
    /// </summary>
    public TimeSpan WarmUp { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>A generation not finished after this long counts as lost (hung, no typed error).</summary>
    public TimeSpan SessionTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Seeds the choice of victims and of each generation's prompt.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Positions per generation (prompt included); every generation is greedy, so its text is known in advance.</summary>
    public int Positions { get; init; } = 256;

    /// <summary>Prompts the generations cycle through; each one's reference text is generated in this process first.</summary>
    public IReadOnlyList<string> Prompts { get; init; } = ["", "Once upon a time", "Lily wanted to", "The little dog"];

    /// <summary>The growth check: RSS or threads grew when the last-third median exceeds the second-third median by more than this fraction…</summary>
    public double GrowthFraction { get; init; } = 0.2;

    /// <summary>…plus this slack in MiB of RSS (so GC noise on a small process is not growth).</summary>
    public double RssSlackMiB { get; init; } = 16;

    /// <summary>…plus this many threads (the thread pool adds and retires a few under load).</summary>
    public int ThreadSlack { get; init; } = 4;

    /// <summary>Open files grew when the last-third median exceeds the second-third one by more than this many (no fraction: sockets and files should come back exactly).</summary>
    public int FdSlack { get; init; } = 8;

    /// <summary>Clock of the kill schedule, the sampler and the deadlines.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}
