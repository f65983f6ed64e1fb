namespace InferenceMesh.Cli.Swarm;

/// <summary>Settings of a local swarm: from the command line, a mesh-config file, or defaults.</summary>
/// <param name="Threads">ONNX Runtime threads per stage run on each node (0: one per core).</param>
/// <param name="Replicas">Servers each block gets, so that killing <c>Replicas − 1</c> nodes leaves every block served.</param>
/// <param name="AnnounceTtl">Lifetime of each node's span announcements (a duration like <c>120s</c>): how long a killed node stays listed.</param>
/// <param name="MaxBatch">Each node's <c>--max-batch</c>: steps of different sessions run as one executor call (1: batching off).</param>
/// <param name="Metrics">Whether each serving node serves Prometheus metrics on a free loopback port (recorded in <c>swarm.json</c>).</param>
public sealed record SwarmSettings(int Nodes, string LinkDelay, string Executor, int MaxSessions, int KvBudgetMb, int Threads = 1, int Replicas = 2, string AnnounceTtl = "120s", bool Metrics = false, int MaxBatch = 64);
