namespace InferenceMesh.P2P.Muxing;

/// <summary>GoAway error codes.</summary>
public enum YamuxGoAwayCode : uint
{
    Normal = 0,
    ProtocolError = 1,
    InternalError = 2,
}
