namespace InferenceMesh.Protocol;

/// <summary>Either side: the request with <paramref name="RequestId"/> (a step or open id; 0 when none applies) failed.</summary>
public sealed record StageError(ulong RequestId, string SessionId, StageErrorCode Code, string Message) : StageMessage
{
    public override string Kind => "error";
}
