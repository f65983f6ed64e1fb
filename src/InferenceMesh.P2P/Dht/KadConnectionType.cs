namespace InferenceMesh.P2P.Dht;

/// <summary>The kad-dht <c>Message.ConnectionType</c> of a listed peer.</summary>
public enum KadConnectionType
{
    /// <summary>No connection and no extra information (default).</summary>
    NotConnected = 0,
    /// <summary>The sender has a live connection to the peer.</summary>
    Connected = 1,
    /// <summary>The sender recently connected to the peer.</summary>
    CanConnect = 2,
    /// <summary>The sender recently failed to connect to the peer.</summary>
    CannotConnect = 3,
}
