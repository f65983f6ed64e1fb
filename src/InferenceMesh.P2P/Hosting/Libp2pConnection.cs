using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Security;

namespace InferenceMesh.P2P.Hosting;

/// <summary>
/// An upgraded connection to one authenticated peer: Noise-secured, Yamux-multiplexed. Opens outbound
/// streams by protocol id and serves inbound ones with the host's handlers. Thread-safe.
/// </summary>
public sealed class Libp2pConnection : IAsyncDisposable
{
    private readonly Libp2pHost _host;
    private readonly NoiseSecureChannel _channel;
    private readonly YamuxSession _session;
    private readonly CancellationTokenSource _cts = new();
    private readonly TaskCompletionSource<IdentifyInfo> _identified = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _acceptLoop = Task.CompletedTask;
    private int _disposed;
    private volatile bool _remoteOpenedStream;
    private volatile IdentifyInfo? _remoteInfo;

    internal Libp2pConnection(Libp2pHost host, NoiseSecureChannel channel, YamuxSession session, bool isOutbound, string muxer, bool muxerFromHandshake)
    {
        _host = host;
        _channel = channel;
        _session = session;
        IsOutbound = isOutbound;
        Muxer = muxer;
        MuxerFromHandshake = muxerFromHandshake;
        RemotePeer = channel.RemotePeer;
        RemoteAddress = channel.Transport.RemoteAddress;
        LocalAddress = channel.Transport.LocalAddress;
        _identified.Task.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted);
    }

    /// <summary>The authenticated remote peer.</summary>
    public PeerId RemotePeer { get; }

    /// <summary>The remote's transport address (without <c>/p2p/</c>).</summary>
    public Multiaddr RemoteAddress { get; }

    /// <summary>This side's transport address.</summary>
    public Multiaddr LocalAddress { get; }

    /// <summary>True when the connection runs over a Circuit Relay v2 circuit (its addresses carry <c>/p2p-circuit</c>); false for a direct one.</summary>
    public bool IsRelayed => Relay.CircuitRelayClient.IsCircuit(RemoteAddress);

    /// <summary>"relayed" or "direct", for logs, metrics and the CLI.</summary>
    public string Path => IsRelayed ? "relayed" : "direct";

    /// <summary>The limit the relay announced for this circuit (relayed connections), or null.</summary>
    public Relay.RelayLimit? RelayLimit => (_channel.Transport as Relay.RelayedTransportConnection)?.Limit;

    /// <summary>Exempts the connection from idle closing and trimming (a reservation on a relay keeps its connection so).</summary>
    public bool KeepAlive { get; set; }

    /// <summary>The round-trip time of the latest <see cref="PingAsync"/> on this connection (the mean when it pinged several times), or null before one.</summary>
    public TimeSpan? MeasuredRtt { get; private set; }

    /// <summary>True when this side dialled.</summary>
    public bool IsOutbound { get; }

    /// <summary>The stream muxer in use (<c>/yamux/1.0.0</c>).</summary>
    public string Muxer { get; }

    /// <summary>True if the muxer came from the Noise extension, false if negotiated over multistream.</summary>
    public bool MuxerFromHandshake { get; }

    /// <summary>The muxer session (limits, ping, stream count).</summary>
    public YamuxSession Session => _session;

    /// <summary>Completes when the connection has closed; faulted with the reason if it failed.</summary>
    public Task Completion => _session.Completion;

    /// <summary>True once closed.</summary>
    public bool IsClosed => _session.IsClosed || Volatile.Read(ref _disposed) != 0;

    /// <summary>How long the connection has carried no stream: zero while one is open.</summary>
    public TimeSpan IdleTime => _session.IdleTime;

    /// <summary>False once closed, closing, or told by the remote (GoAway) that it takes no new streams.</summary>
    public bool AcceptsNewStreams => !IsClosed && !_session.IsGoingAway;

    /// <summary>The latest Identify (or push) from the remote, or null before the first.</summary>
    public IdentifyInfo? RemoteInfo => _remoteInfo;

    /// <summary>Completes with the first Identify from the remote (when the host runs Identify on connect).</summary>
    public Task<IdentifyInfo> Identified => _identified.Task;

    internal void Start()
    {
        _session.Start();
        _acceptLoop = Task.Run(AcceptLoopAsync);
        if (!IsOutbound && _host.Options.Limits.FirstStreamTimeout != Timeout.InfiniteTimeSpan)
            _ = CloseUnlessStreamOpenedAsync(_host.Options.Limits.FirstStreamTimeout);
        _ = _session.Completion.ContinueWith(t => OnSessionEnded(t), TaskScheduler.Default);
    }

    /// <summary>Closes an inbound connection whose remote opened no stream within <paramref name="timeout"/>: one that upgrades and then only holds a slot.</summary>
    private async Task CloseUnlessStreamOpenedAsync(TimeSpan timeout)
    {
        try
        {
            await Task.Delay(timeout, _host.Options.Time, _cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        if (_remoteOpenedStream || IsClosed)
            return;
        _host.LimitHit(Libp2pLimit.FirstStreamTimeout, $"inbound connection from {RemotePeer} at {RemoteAddress} closed: no stream opened within {timeout.TotalSeconds:0.###} s");
        await DisposeAsync().ConfigureAwait(false);
    }

    private async Task OnSessionEnded(Task t)
    {
        if (t.Exception?.InnerException is P2PException e)
            _host.ReportFailure(RemoteAddress, RemotePeer, e);
        await DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Opens a stream and negotiates the first of <paramref name="protocols"/> the remote supports.
    /// Throws <see cref="P2PException"/> (ProtocolNotSupported, Timeout, ConnectionClosed). Safe to cancel:
    /// a half-negotiated stream is reset.
    /// </summary>
    public async Task<Libp2pStream> OpenStreamAsync(IReadOnlyList<string> protocols, CancellationToken cancellationToken = default)
    {
        var ys = await _session.OpenStreamAsync(cancellationToken).ConfigureAwait(false);
        using var timeout = new Deadline(_host.Options.StreamNegotiationTimeout, _host.Options.Time, cancellationToken, _cts.Token);
        try
        {
            var protocol = await Multistream.SelectAsync(ys, protocols, timeout.Token).ConfigureAwait(false);
            return new Libp2pStream(this, ys, protocol);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            ys.Reset();
            await ys.DisposeAsync().ConfigureAwait(false);
            throw new P2PException(P2PErrorCode.Timeout, $"negotiating {string.Join(", ", protocols)} with {RemotePeer} timed out", e);
        }
        catch
        {
            ys.Reset();
            await ys.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Opens a stream for one protocol; see <see cref="OpenStreamAsync(IReadOnlyList{string}, CancellationToken)"/>.</summary>
    public Task<Libp2pStream> OpenStreamAsync(string protocol, CancellationToken cancellationToken = default) =>
        OpenStreamAsync([protocol], cancellationToken);

    /// <summary>Runs <paramref name="count"/> libp2p pings on one stream; see <see cref="PingProtocol.PingAsync"/>. Safe to cancel.</summary>
    public async Task<IReadOnlyList<TimeSpan>> PingAsync(int count = 1, CancellationToken cancellationToken = default)
    {
        var rtts = await PingProtocol.PingAsync(this, count, cancellationToken).ConfigureAwait(false);
        if (rtts.Count > 0)
            MeasuredRtt = TimeSpan.FromTicks((long)rtts.Average(r => r.Ticks));
        return rtts;
    }

    /// <summary>Asks the remote for its Identify now and records it. Safe to cancel.</summary>
    public async Task<IdentifyInfo> IdentifyAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var info = await IdentifyProtocol.RequestAsync(this, _host.Options.MaxIdentifyMessage, cancellationToken).ConfigureAwait(false);
            CheckKey(info);
            _remoteInfo = info;
            _identified.TrySetResult(info);
            if (info.ObservedAddress is { } observed) _host.OnAddressObserved(this, observed);
            return info;
        }
        catch (Exception e)
        {
            _identified.TrySetException(e);
            throw;
        }
    }

    internal void OnIdentifyPush(IdentifyInfo push, ReadOnlySpan<byte> raw)
    {
        var merged = IdentifyCodec.Merge(_remoteInfo, push, raw);
        CheckKey(merged);
        _remoteInfo = merged;
        _identified.TrySetResult(merged);
    }

    private void CheckKey(IdentifyInfo info)
    {
        if (info.PublicKey is not null && info.PeerId != RemotePeer)
            throw new P2PException(P2PErrorCode.PeerIdMismatch, $"Identify from {RemotePeer} carries the key of {info.PeerId}");
    }

    private async Task AcceptLoopAsync()
    {
        while (true)
        {
            YamuxStream ys;
            try
            {
                ys = await _session.AcceptStreamAsync(_cts.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException)
            {
                return;
            }
            _remoteOpenedStream = true;
            _ = Task.Run(() => ServeAsync(ys));
        }
    }

    private async Task ServeAsync(YamuxStream ys)
    {
        Libp2pStream? stream = null;
        try
        {
            string protocol;
            using (var timeout = new Deadline(_host.Options.StreamNegotiationTimeout, _host.Options.Time, _cts.Token))
            {
                protocol = await Multistream.ListenAsync(ys, _host.HasHandler, timeout.Token).ConfigureAwait(false);
            }
            var handler = _host.GetHandler(protocol);
            if (handler is null)
            {
                ys.Reset();
                return;
            }
            if (!_host.Usage.TryAddStream(protocol, _host.Options.Limits.MaxInboundStreamsPerProtocol))
            {
                _host.LimitHit(Libp2pLimit.StreamsPerProtocol, $"stream from {RemotePeer} for {protocol} reset: {_host.Options.Limits.MaxInboundStreamsPerProtocol} inbound streams of it open");
                ys.Reset();
                return;
            }
            try
            {
                stream = new Libp2pStream(this, ys, protocol);
                await handler(stream, _cts.Token).ConfigureAwait(false);
            }
            finally
            {
                _host.Usage.RemoveStream(protocol);
            }
        }
        catch (Exception e)
        {
            if (!_cts.IsCancellationRequested && e is not P2PException { P2PCode: P2PErrorCode.StreamReset or P2PErrorCode.ConnectionClosed })
                _host.Options.Log?.Invoke($"stream from {RemotePeer} ({stream?.Protocol ?? "negotiating"}) failed: {Describe(e)}");
            ys.Reset();
        }
        finally
        {
            await ys.DisposeAsync().ConfigureAwait(false);
        }
    }

    internal static string Describe(Exception e) => e is P2PException p ? $"{p.P2PCode}: {p.Message}" : $"{e.GetType().Name}: {e.Message}";

    /// <summary>Closes the connection (Yamux GoAway, then the socket). Not safe to cancel; bounded to a few seconds.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _identified.TrySetException(new P2PException(P2PErrorCode.ConnectionClosed, $"connection to {RemotePeer} closed"));
        _cts.Cancel();
        await _session.DisposeAsync().ConfigureAwait(false);
        await _acceptLoop.ConfigureAwait(false);
        await _channel.CloseAsync().ConfigureAwait(false);
        _host.Remove(this);
        _host.Usage.ReleaseMemory(_host.Options.Limits.MemoryPerConnection);
        _cts.Dispose();
    }
}
