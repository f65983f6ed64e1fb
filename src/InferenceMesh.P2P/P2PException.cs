using InferenceMesh.Core;

namespace InferenceMesh.P2P;

/// <summary>
/// A libp2p-layer failure. It is a <see cref="MeshException"/> whose <see cref="MeshException.Code"/>
/// is the closest generic code; <see cref="P2PCode"/> says precisely what went wrong.
/// </summary>
public class P2PException : MeshException
{
    public P2PException(P2PErrorCode code, string message, Exception? inner = null)
        : base(ToMeshCode(code), message, inner) => P2PCode = code;

    /// <summary>The precise libp2p-layer reason.</summary>
    public P2PErrorCode P2PCode { get; }

    private static MeshErrorCode ToMeshCode(P2PErrorCode code) => code switch
    {
        P2PErrorCode.LimitExceeded => MeshErrorCode.LimitExceeded,
        P2PErrorCode.InvalidEncoding or P2PErrorCode.NoTransport or P2PErrorCode.KeyFile => MeshErrorCode.InvalidArgument,
        P2PErrorCode.PeerIdMismatch => MeshErrorCode.IntegrityMismatch,
        _ => MeshErrorCode.ProtocolViolation,
    };
}
