namespace InferenceMesh.Client;

/// <summary>How this client's host reaches a server now, as its connection pool says.</summary>
public enum PeerConnection
{
    /// <summary>The directory cannot tell (a directory not backed by a libp2p host, such as an in-memory mesh).</summary>
    Unknown = 0,

    /// <summary>No open connection to the server.</summary>
    None = 1,

    /// <summary>Connected straight to one of the server's own addresses.</summary>
    Direct = 2,

    /// <summary>Connected through a relay (a <c>/p2p-circuit</c> address).</summary>
    Relayed = 3,
}
