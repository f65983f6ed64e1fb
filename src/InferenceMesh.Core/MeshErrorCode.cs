namespace InferenceMesh.Core;

/// <summary>Machine-readable reason for a <see cref="MeshException"/>; stable across releases.</summary>
public enum MeshErrorCode
{
    InvalidArgument,
    InvalidCheckpoint,
    InvalidTokenizer,
    TokenizerMismatch,
    InvalidOnnx,
    NoCutPoint,
    ContextOverflow,
    InvalidManifest,
    IntegrityMismatch,
    ShapeMismatch,
    UnknownSession,
    LimitExceeded,
    ProtocolViolation,
    RouteUnavailable,
    Timeout,

    /// <summary>None of the peers given to join through (bootstrap) answered.</summary>
    PeersUnreachable,
}
