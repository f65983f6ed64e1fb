namespace InferenceMesh.P2P.Dht;

/// <summary>A stored record with the local time it was received.</summary>
/// <param name="Key">The record key.</param>
/// <param name="Value">The value.</param>
/// <param name="ReceivedAt">When this node stored it (expiry counts from here).</param>
public sealed record StoredRecord(byte[] Key, byte[] Value, DateTimeOffset ReceivedAt);
