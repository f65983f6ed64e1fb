namespace InferenceMesh.P2P.Dht;

/// <summary>The kad-dht <c>Message.MessageType</c>; a response carries its request's type.</summary>
public enum KadMessageType
{
    /// <summary>Store a record (0 is the protobuf default: js-libp2p omits the field).</summary>
    PutValue = 0,
    /// <summary>Fetch a record and closer peers.</summary>
    GetValue = 1,
    /// <summary>Announce the sender as a provider of a key.</summary>
    AddProvider = 2,
    /// <summary>Fetch the providers of a key and closer peers.</summary>
    GetProviders = 3,
    /// <summary>Fetch the peers closest to a key.</summary>
    FindNode = 4,
    /// <summary>Liveness check (deprecated in the spec; still answered).</summary>
    Ping = 5,
}
