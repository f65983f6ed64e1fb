namespace InferenceMesh.Fuzz;

/// <summary>
/// One parser under fuzzing: <see cref="Run"/> feeds it one input. Bad input must end in a typed
/// <see cref="Core.MeshException"/> (the targets catch it); any other exception, or a hang, is a finding.
/// </summary>
/// <param name="Name">The target's name on the command line and its corpus folder under <c>fuzz/corpus/</c>.</param>
/// <param name="Run">Parses one input; throws only on a finding.</param>
public sealed record FuzzTarget(string Name, Action<byte[]> Run);
