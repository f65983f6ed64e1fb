namespace InferenceMesh.Protocol;

/// <summary>The stage protocol's id on a libp2p stream.</summary>
public static class StageProtocol
{
    public const string Id = "/inferencemesh/stage/1.0.0";
}
