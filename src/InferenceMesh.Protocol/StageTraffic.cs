namespace InferenceMesh.Protocol;

/// <summary>
/// Stage-protocol bytes (whole frames, length prefixes included) sent and received by every <see cref="StageChannel"/>
/// that shares this counter: what a node or a client exports as its traffic metrics. Thread-safe.
/// </summary>
public sealed class StageTraffic
{
    private long _bytesSent;
    private long _bytesReceived;

    /// <summary>Bytes of frames handed to the transport so far.</summary>
    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Bytes of whole frames read from the transport so far.</summary>
    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    internal void Sent(long bytes) => Interlocked.Add(ref _bytesSent, bytes);

    internal void Received(long bytes) => Interlocked.Add(ref _bytesReceived, bytes);
}
