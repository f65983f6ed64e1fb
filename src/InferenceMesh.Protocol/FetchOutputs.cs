namespace InferenceMesh.Protocol;

/// <summary>
/// Client → server: send back the outputs a session opened with <see cref="OpenSession.KeepOutputs"/> kept for positions
/// [<paramref name="StartPosition"/>, +<paramref name="Positions"/>). The answer is one <see cref="StepResult"/> with
/// <paramref name="RequestId"/> as its step id and no commitment (the receipts already committed to each step), or a
/// <see cref="StageError"/>: <see cref="StageErrorCode.ShapeMismatch"/> for positions it does not hold,
/// <see cref="StageErrorCode.LimitExceeded"/> for more than one frame carries.
/// </summary>
public sealed record FetchOutputs(ulong RequestId, string SessionId, int StartPosition, int Positions) : StageMessage
{
    public override string Kind => "fetch";
}
