namespace InferenceMesh.Protocol;

/// <summary>
/// Server → client, in place of a <see cref="StepResult"/> for a chained step of a session opened with
/// <see cref="OpenSession.KeepOutputs"/>: the step ran over <paramref name="Positions"/> positions and its output, now with
/// the next server, is kept here for a <see cref="FetchOutputs"/>. About 200 bytes instead of a whole activation.
/// </summary>
/// <param name="Commitment">The server's signed commitment to the output it kept and the input it ran; null from a server that does not sign.</param>
public sealed record StepReceipt(ulong StepId, string SessionId, int BlockEnd, int Positions, StepCommitment? Commitment = null) : StageMessage
{
    public override string Kind => "receipt";
}
