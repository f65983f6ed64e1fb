namespace InferenceMesh.P2P.Nat;

/// <summary>Whether other peers can dial this node directly, as AutoNAT learned it.</summary>
public enum Reachability
{
    /// <summary>Not enough answers yet.</summary>
    Unknown,
    /// <summary>Enough servers dialled an announced address back.</summary>
    Public,
    /// <summary>Enough servers failed to dial any announced address back: behind a NAT or firewall.</summary>
    Private,
}
