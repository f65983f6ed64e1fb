namespace InferenceMesh.Protocol;

/// <summary>Server → client: the session is open.</summary>
public sealed record SessionOpened(ulong RequestId, string SessionId) : StageMessage
{
    public override string Kind => "opened";
}
