using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>
/// Server → client: the output activation of a step after block <paramref name="BlockEnd"/> (exclusive). In a
/// chained step every server sends one, so the client keeps each span's inputs to replay after a failure;
/// the client waits only for the one that ends the route.
/// </summary>
public sealed record StepResult(ulong StepId, string SessionId, int BlockEnd, TensorData Activation) : StageMessage
{
    public override string Kind => "result";
}
