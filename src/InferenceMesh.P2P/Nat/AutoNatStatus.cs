namespace InferenceMesh.P2P.Nat;

/// <summary>AutoNAT v1 <c>ResponseStatus</c>, with its wire values.</summary>
public enum AutoNatStatus
{
    /// <summary>The server dialled one of the addresses back.</summary>
    Ok = 0,
    /// <summary>Every dial back failed: the addresses are not reachable from the server.</summary>
    DialError = 100,
    /// <summary>The server would not dial (no address on the requester's observed IP, or a rate limit).</summary>
    DialRefused = 101,
    /// <summary>The request was malformed.</summary>
    BadRequest = 200,
    /// <summary>The server failed for its own reasons.</summary>
    InternalError = 300,
}
