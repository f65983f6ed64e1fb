namespace InferenceMesh.P2P.Dht;

/// <summary>Whether a node answers DHT queries (server) or only asks them (client, e.g. behind NAT).</summary>
public enum DhtMode
{
    /// <summary>Answers queries, stores records, is listed in others' routing tables.</summary>
    Server,
    /// <summary>Only sends queries; registers no protocol handler and stores nothing for others.</summary>
    Client,
}
