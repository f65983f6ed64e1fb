namespace InferenceMesh.P2P.Muxing;

/// <summary>Yamux frame types (hashicorp/yamux spec).</summary>
public enum YamuxFrameType : byte
{
    Data = 0,
    WindowUpdate = 1,
    Ping = 2,
    GoAway = 3,
}
