namespace InferenceMesh.Protocol;

/// <summary>Why a stage request failed; sent in <see cref="StageError"/> and stable on the wire.</summary>
public enum StageErrorCode
{
    Malformed = 1,
    UnknownSession = 2,
    ShapeMismatch = 3,
    LimitExceeded = 4,
    UnknownModel = 5,
    BlocksNotServed = 6,
    ContextOverflow = 7,
    Overloaded = 8,
    NextHopFailed = 9,
    Internal = 10,
}
