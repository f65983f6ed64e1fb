using System.Buffers;

namespace InferenceMesh.P2P.Muxing;

/// <summary>Limits and tuning of a <see cref="YamuxSession"/>. All sizes in bytes.</summary>
public sealed record YamuxOptions
{
    /// <summary>The spec's initial per-stream window (256 KiB); both sides start from it.</summary>
    public const int InitialWindow = 256 * 1024;

    /// <summary>Largest receive window a stream grows to as its reader keeps up (default 1 MiB, at least 256 KiB).</summary>
    public int MaxStreamWindow { get; init; } = 1024 * 1024;

    /// <summary>
    /// Most bytes a stream keeps that its reader has examined but not consumed (AdvanceTo examined beyond
    /// consumed). Window credit follows what the reader has examined, up to this much unconsumed data, so
    /// a reader may wait for a message larger than the window. Set it at least to the largest message an
    /// application protocol parses in one piece (default 16 MiB).
    /// </summary>
    public int MaxStreamReadBuffer { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most streams open at once, both directions together; an inbound SYN beyond it is answered with RST.</summary>
    public int MaxConcurrentStreams { get; init; } = 1024;

    /// <summary>Most outbound streams not yet acknowledged by the remote; opening more waits (spec: 256).</summary>
    public int MaxUnackedOutboundStreams { get; init; } = 256;

    /// <summary>
    /// Most payload bytes in one outbound data frame (default 63 KiB). The default leaves room for the frame's
    /// 12-byte header and Noise's 2-byte length and 16-byte tag, so one full frame is one Noise message and
    /// one TCP segment on loopback (MSS 65,483 bytes over IPv4): a 64 KiB frame became a full message, a
    /// 29-byte one and a tiny trailing segment, and one stream carried 10–20% less (docs/BENCHMARKS.md).
    /// </summary>
    public int MaxFrameSize { get; init; } = 63 * 1024;

    /// <summary>Bytes an application may write to a stream ahead of the wire before its FlushAsync waits.</summary>
    public int StreamWriteBuffer { get; init; } = 1024 * 1024;

    /// <summary>Most control frames (window updates, pings, resets) queued unsent; a peer that makes more is cut off.</summary>
    public int MaxQueuedControlFrames { get; init; } = 16 * 1024;

    /// <summary>Buffer pool for every pipe of the session; <see cref="MemoryPool{T}.Shared"/> when null.</summary>
    public MemoryPool<byte>? Pool { get; init; }

    /// <summary>One line per session-ending error, or null for none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>The clock that <see cref="YamuxSession.IdleTime"/> is read from; <see cref="TimeProvider.System"/> when null.</summary>
    public TimeProvider? Time { get; init; }

    internal void Validate()
    {
        if (MaxStreamWindow < InitialWindow)
            throw new ArgumentOutOfRangeException(nameof(MaxStreamWindow), "must be at least 256 KiB");
        if (MaxConcurrentStreams < 1 || MaxUnackedOutboundStreams < 1 || MaxFrameSize < 1024 || StreamWriteBuffer < 1024)
            throw new ArgumentOutOfRangeException(nameof(MaxConcurrentStreams), "Yamux limits must be positive");
    }
}
