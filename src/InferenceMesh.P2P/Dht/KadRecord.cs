namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The kad-dht <c>Record</c>: key, value and <c>timeReceived</c> (RFC 3339 text, set by the receiver;
/// js-libp2p requires it to be present).
/// </summary>
public sealed record KadRecord(byte[] Key, byte[] Value, string TimeReceived = "");
