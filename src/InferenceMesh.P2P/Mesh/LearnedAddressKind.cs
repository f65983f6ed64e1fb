namespace InferenceMesh.P2P.Mesh;

/// <summary>How a <see cref="MeshPeer"/> learned one of its own addresses.</summary>
public enum LearnedAddressKind
{
    /// <summary>The home gateway forwards this external address to us (UPnP, NAT-PMP or PCP); it is announced.</summary>
    Mapped,
    /// <summary>A previously mapped address the gateway no longer forwards; it is no longer announced.</summary>
    Unmapped,
    /// <summary>A peer's Identify says it sees us at this address (after any NAT); not announced, since behind a NAT nothing may listen there.</summary>
    Observed,
}
