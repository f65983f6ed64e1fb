using InferenceMesh.Core;

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

/// <summary>
/// A DHT failure. A <see cref="MeshException"/> whose <see cref="MeshException.Code"/> is the closest
/// generic code; <see cref="DhtCode"/> says precisely what went wrong.
/// </summary>
public sealed class DhtException : MeshException
{
    public DhtException(DhtErrorCode code, string message, Exception? inner = null)
        : base(ToMeshCode(code), message, inner) => DhtCode = code;

    /// <summary>The precise DHT reason.</summary>
    public DhtErrorCode DhtCode { get; }

    /// <summary>The error for a message that does not decode (what the shared protobuf reader raises in the DHT).</summary>
    internal static readonly Func<string, Exception> InvalidMessage = why => new DhtException(DhtErrorCode.InvalidMessage, why);

    private static MeshErrorCode ToMeshCode(DhtErrorCode code) => code switch
    {
        DhtErrorCode.LimitExceeded => MeshErrorCode.LimitExceeded,
        DhtErrorCode.InvalidRecord => MeshErrorCode.IntegrityMismatch,
        DhtErrorCode.UnknownNamespace or DhtErrorCode.NotFound or DhtErrorCode.NoPeers => MeshErrorCode.InvalidArgument,
        _ => MeshErrorCode.ProtocolViolation,
    };
}
