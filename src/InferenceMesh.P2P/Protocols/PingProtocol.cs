namespace InferenceMesh.P2P.Protocols;

/// <summary>Ping (<c>/ipfs/ping/1.0.0</c>): 32 random bytes, echoed back.</summary>
public static class PingProtocol
{
    /// <summary>The protocol id.</summary>
    public const string ProtocolId = "/ipfs/ping/1.0.0";

    /// <summary>Payload size in bytes.</summary>
    public const int PayloadSize = 32;
}
