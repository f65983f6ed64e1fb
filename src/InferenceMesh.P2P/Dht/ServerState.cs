namespace InferenceMesh.P2P.Dht;

/// <summary>Lifecycle state of a server for a span, as announced.</summary>
public enum ServerState
{
    /// <summary>Loading weights; not ready for sessions.</summary>
    Joining = 0,
    /// <summary>Serving.</summary>
    Online = 1,
    /// <summary>Leaving or drained; clients should route elsewhere.</summary>
    Offline = 2,
}
