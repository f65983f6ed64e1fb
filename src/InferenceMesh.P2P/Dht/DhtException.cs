using InferenceMesh.Core;

namespace InferenceMesh.P2P.Dht;

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
