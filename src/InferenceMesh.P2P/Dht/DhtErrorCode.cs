namespace InferenceMesh.P2P.Dht;

/// <summary>Machine-readable reason for a <see cref="DhtException"/>; stable across releases.</summary>
public enum DhtErrorCode
{
    /// <summary>A DHT message or record breaks the kad-dht wire format or a rule of the protocol.</summary>
    InvalidMessage,
    /// <summary>A length or count from the wire or the caller exceeds a configured maximum.</summary>
    LimitExceeded,
    /// <summary>A record was refused by its namespace's validator (bad signature, wrong key, expired...).</summary>
    InvalidRecord,
    /// <summary>No validator is registered for the record key's namespace.</summary>
    UnknownNamespace,
    /// <summary>The peer did not answer within the request timeout, or was unreachable.</summary>
    Unreachable,
    /// <summary>A lookup ended without finding what it looked for.</summary>
    NotFound,
    /// <summary>The operation needs peers but the routing table is empty.</summary>
    NoPeers,
}
