using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>
/// Server → client: the output activation of a step after block <paramref name="BlockEnd"/> (exclusive). In a
/// chained step every server sends one, so the client keeps each span's inputs to replay after a failure;
/// the client waits only for the one that ends the route.
/// </summary>
/// <param name="Commitment">The server's signed commitment to this output and the input it ran; null from a server that
/// does not sign (the field is optional on the wire, so frames without it still read).</param>
public sealed record StepResult(ulong StepId, string SessionId, int BlockEnd, TensorData Activation, StepCommitment? Commitment = null) : StageMessage
{
    public override string Kind => "result";
}
