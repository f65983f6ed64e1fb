namespace InferenceMesh.Protocol;

/// <summary>Client → server: free the session's KV cache.</summary>
public sealed record CloseSession(string SessionId) : StageMessage
{
    public override string Kind => "close";
}
