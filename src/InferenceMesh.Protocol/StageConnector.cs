using System.IO.Pipelines;

namespace InferenceMesh.Protocol;

/// <summary>
/// An <see cref="IStageConnector"/> over any way of opening a byte stream to a peer (a libp2p stream in a
/// real mesh), optionally behind an emulated one-way link delay.
/// </summary>
/// <param name="open">Opens a stream to the peer at one of its addresses; safe to cancel.</param>
/// <param name="traffic">Counts the bytes of every channel this connector makes; null for none.</param>
public sealed class StageConnector(Func<string, IReadOnlyList<string>, CancellationToken, ValueTask<IDuplexPipe>> open, TimeSpan linkDelay = default, StageLimits? limits = null,
    StageTraffic? traffic = null) : IStageConnector
{
    public TimeSpan LinkDelay => linkDelay;

    /// <summary>The bytes counter of this connector's channels, which a server also gives its inbound channels; null for none.</summary>
    public StageTraffic? Traffic => traffic;

    public async ValueTask<StageChannel> ConnectAsync(string peerId, IReadOnlyList<string> addresses, CancellationToken cancellation) =>
        new(Wrap(await open(peerId, addresses, cancellation).ConfigureAwait(false)), limits, traffic);

    /// <summary>Applies the link delay to a stream opened by a peer (inbound), as <see cref="ConnectAsync"/> does to outbound ones.</summary>
    public IDuplexPipe Wrap(IDuplexPipe stream) => linkDelay > TimeSpan.Zero ? new DelayedDuplexPipe(stream, linkDelay) : stream;
}
