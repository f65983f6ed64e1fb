namespace InferenceMesh.Cli.Swarm;

/// <summary>Settings of a local swarm: from the command line, a mesh-config file, or defaults.</summary>
/// <param name="Threads">ONNX Runtime threads per stage run on each node (0: one per core).</param>
/// <param name="Replicas">Servers each block gets, so that killing <c>Replicas − 1</c> nodes leaves every block served.</param>
public sealed record SwarmSettings(int Nodes, string LinkDelay, string Executor, int MaxSessions, int KvBudgetMb, int Threads = 1, int Replicas = 2);
