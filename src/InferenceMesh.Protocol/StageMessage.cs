namespace InferenceMesh.Protocol;

/// <summary>One message of the stage protocol <c>/inferencemesh/stage/1.0.0</c>; each travels as a varint-prefixed MessagePack map.</summary>
public abstract record StageMessage
{
    /// <summary>The wire name in the map's <c>t</c> field.</summary>
    public abstract string Kind { get; }
}
