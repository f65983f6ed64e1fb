using System.Diagnostics;
using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.Protocol;
using Prometheus;

namespace InferenceMesh.Node;

/// <summary>
/// The mesh daemon as a library: joins the mesh (identity, listening, bootstrap), chooses its span (given
/// blocks, or Petals' rule over what the DHT lists), measures its throughput, serves the span's block stages
/// over <c>/inferencemesh/stage/1.0.0</c>, and announces the span every minute. Disposing it shuts down in
/// order: stop accepting stage streams → drain (or fail) steps in flight → dispose the executors → announce
/// offline → close the host.
/// </summary>
/// <example><code>
/// await using var node = await MeshNode.StartAsync(new MeshNodeOptions { ModelDirectory = "split/", Bootstrap = [address] }, ct);
/// </code></example>
public sealed class MeshNode : IAsyncDisposable
{
    private readonly MeshNodeOptions _options;
    private readonly MeshPeer _peer;
    private readonly Ed25519KeyPair? _ownedIdentity;
    private readonly ServedSpan? _span;
    private readonly StageServer? _server;
    private readonly CancellationTokenSource _announcing = new();
    private Task _announceLoop = Task.CompletedTask;
    private readonly Action<string> _log;
    private IMetricServer? _metricServer;
    private int _disposed;

    private MeshNode(MeshNodeOptions options, MeshPeer peer, Ed25519KeyPair? ownedIdentity, ServedSpan? span, StageServer? server, SpanChoice? choice, double throughput)
    {
        _options = options;
        _peer = peer;
        _ownedIdentity = ownedIdentity;
        _span = span;
        _server = server;
        _log = options.Log ?? (_ => { });
        Span = choice;
        Throughput = throughput;
        if (span is not null)
            peer.AddressLearned += OnAddressLearned;
    }

    private readonly Lock _reannounceLock = new();
    private Task _reannounce = Task.CompletedTask;

    /// <summary>A mapped address appeared or went: announce the span now with the new addresses rather than at the next refresh.</summary>
    private void OnAddressLearned(LearnedAddress learned)
    {
        if (learned.Kind == LearnedAddressKind.Observed || _announcing.IsCancellationRequested)
            return;
        lock (_reannounceLock)
            _reannounce = ReannounceAfterAsync(_reannounce);
    }

    private async Task ReannounceAfterAsync(Task previous)
    {
        await previous.ConfigureAwait(false);
        try
        {
            await AnnounceOnceAsync(_announcing.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_announcing.IsCancellationRequested)
        {
        }
    }

    /// <summary>This node's libp2p identity.</summary>
    public PeerId PeerId => _peer.Host.PeerId;

    /// <summary>The addresses the node listens on, as bound (port 0 resolved).</summary>
    public IReadOnlyList<Multiaddr> ListenAddresses => _peer.Host.ListenAddresses;

    /// <summary>The addresses the node announces (an unspecified listen IP replaced by the interface addresses).</summary>
    public IReadOnlyList<Multiaddr> AdvertisedAddresses => _peer.AdvertisedAddresses;

    /// <summary>The blocks served and why; null for a node without a model.</summary>
    public SpanChoice? Span { get; }

    /// <summary>The model served; null for a node without a model.</summary>
    public string? ModelId => _span?.Manifest.ModelId;

    /// <summary>Measured decode throughput through the whole span, in tokens per second (what the node announces); 0 without a model.</summary>
    public double Throughput { get; }

    /// <summary>Sessions open on this node now.</summary>
    public int SessionCount => _server?.SessionCount ?? 0;

    /// <summary>KV-cache bytes reserved by open sessions now.</summary>
    public long ReservedKvBytes => _server?.ReservedKvBytes ?? 0;

    /// <summary>The node's Prometheus metrics (a node without a model has only its connection, relay and limit figures).</summary>
    public NodeMetrics? Metrics { get; private set; }

    /// <summary>The mesh peer under the node (host, DHT, span directory), for tools that ask the DHT.</summary>
    public MeshPeer Peer => _peer;

    /// <summary>Starts the node and returns once it listens and serves; the span is announced in the background from then on. Safe to cancel (everything started is closed).</summary>
    /// <exception cref="MeshException">Bad options (blocks off stage boundaries, a missing model), or a model that cannot be loaded.</exception>
    public static async Task<MeshNode> StartAsync(MeshNodeOptions options, CancellationToken cancellation = default)
    {
        var log = options.Log ?? (_ => { });
        options.Fault?.EnsureAllowed();
        var manifest = options.ModelDirectory is null ? null : Manifest.Load(options.ModelDirectory);
        Ed25519KeyPair? owned = null;
        var identity = options.Identity;
        if (identity is null)
            identity = owned = options.IdentityFile is null ? Ed25519KeyPair.Generate() : KeyFile.LoadOrCreate(options.IdentityFile);
        MeshPeer? peer = null;
        ServedSpan? span = null;
        StageServer? server = null;
        StageConnector? connector = null;
        var traffic = new StageTraffic();
        try
        {
            peer = await MeshPeer.StartAsync(new MeshPeerOptions
            {
                Identity = identity,
                Listen = options.Listen,
                Bootstrap = options.Bootstrap,
                Mode = DhtMode.Server,
                Transports = options.Transports,
                Time = options.Time,
                Log = options.Log,
                AnnounceTtl = options.AnnounceTtl,
                Relay = options.Relay,
                Private = options.Private,
                Relays = options.Relays,
                HolePunching = options.HolePunching,
                AutoNat = options.AutoNat,
                AddressLearned = options.AddressLearned,
                BeforeListening = host => connector = StageHosting.Connector(host, options.LinkDelay, traffic),
            }, cancellation).ConfigureAwait(false);
            if (options.ReachabilityChanged is { } reachability)
                peer.AutoNat.ReachabilityChanged += reachability;
            if (options.ReachabilityCheckInterval is { } interval)
                peer.StartReachabilityChecks(interval);
            if (options.PortMapping is { } mapping && !peer.StartPortMapping(mapping))
                log("no port mapping: no non-loopback TCP listen address to map");
            if (manifest is null)
            {
                // A node without a model (a bootstrap, a relay) still has connection and relay figures to serve.
                var bare = new MeshNode(options, peer, owned, null, null, null, 0);
                (peer, owned) = (null, null);
                try
                {
                    bare.StartMetrics(new NodeMetrics(null, options.Limits, 0, traffic, bare._peer), log);
                }
                catch
                {
                    await bare.DisposeAsync().ConfigureAwait(false);
                    throw;
                }
                return bare;
            }

            var choice = await ChooseSpanAsync(peer, manifest, options, cancellation).ConfigureAwait(false);
            log($"serving blocks {choice.Blocks}: {choice.Reason}");
            span = ServedSpan.Load(options.ModelDirectory!, choice.Blocks, options.Executor, options.Limits.MaxSessions, options.Log, options.Threads);
            var throughput = MeasureThroughput(span);
            server = new StageServer(span, options.Limits, connector!, options.Log, identity: identity, fault: options.Fault);
            if (options.Fault is { } fault) log($"FAULT INJECTION: this node lies ({fault})");
            StageHosting.Serve(peer.Host, server, connector!);
            log($"serving blocks {span.Blocks} of model {manifest.ModelId} at {throughput:F1} tokens/s");
            var node = new MeshNode(options, peer, owned, span, server, choice, throughput);
            (peer, owned, span, server) = (null, null, null, null);
            try
            {
                // node._peer, not peer: that local was handed to the node (and cleared) above.
                node.StartMetrics(new NodeMetrics(node._server!, options.Limits, throughput, traffic, node._peer), log);
                await node.AnnounceOnceAsync(cancellation).ConfigureAwait(false);
            }
            catch
            {
                await node.DisposeAsync().ConfigureAwait(false);
                throw;
            }
            node._announceLoop = node.AnnounceAsync(node._announcing.Token);
            return node;
        }
        catch
        {
            if (server is not null) await server.DisposeAsync().ConfigureAwait(false);
            span?.Dispose();
            if (peer is not null) await peer.DisposeAsync().ConfigureAwait(false);
            owned?.Dispose();
            throw;
        }
    }

    /// <summary>Keeps <paramref name="metrics"/> and serves them at <see cref="MeshNodeOptions.MetricsUrl"/> when one is set.</summary>
    private void StartMetrics(NodeMetrics metrics, Action<string> log)
    {
        Metrics = metrics;
        if (_options.MetricsUrl is not { } url)
            return;
        _metricServer = new MetricServer(url.Host, url.Port, url.AbsolutePath.TrimStart('/'), metrics.Registry).Start();
        log($"metrics at {url}");
    }

    /// <summary>Announces the span online with the KV room free now; a failure is logged and retried next round.</summary>
    private async Task AnnounceOnceAsync(CancellationToken cancellation)
    {
        try
        {
            await _peer.Spans.AnnounceAsync(_span!.Manifest.ModelId, _span.Blocks, Throughput, ServerState.Online,
                _server!.FreeKvBytes / _span.KvBytesPerPosition(_span.Blocks), cancellation).ConfigureAwait(false);
        }
        catch (MeshException e)
        {
            _log($"could not announce blocks {_span!.Blocks}: {e.Message}");
        }
    }

    /// <summary>Re-announces every <see cref="SpanDirectory.RefreshInterval"/> (before the TTL lets the records expire) until cancelled.</summary>
    private async Task AnnounceAsync(CancellationToken cancellation)
    {
        try
        {
            while (true)
            {
                await Task.Delay(_peer.Spans.RefreshInterval, _options.Time, cancellation).ConfigureAwait(false);
                await AnnounceOnceAsync(cancellation).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
    }

    private static async Task<SpanChoice> ChooseSpanAsync(MeshPeer peer, Manifest manifest, MeshNodeOptions options, CancellationToken cancellation)
    {
        if (options.Blocks is { } given) return new SpanChoice(given, "given explicitly");
        if (options.BlockCount is not { } count)
            return new SpanChoice(new BlockRange(0, manifest.BlockCount), $"all {manifest.BlockCount} blocks, since neither a block range nor a block count was given");
        var perBlock = await peer.Spans.ListServersAsync(manifest.ModelId, manifest.BlockCount, cancellation).ConfigureAwait(false);
        var servers = perBlock.SelectMany(b => b).Where(s => s.State == ServerState.Online).GroupBy(s => s.Peer).Select(g => (g.First().Span, g.First().Throughput));
        return SpanChooser.ChooseWithReason(manifest.BlockCount, count, servers);
    }

    /// <summary>Tokens per second through the span for one decode step, timed on a scratch session (what the node announces).</summary>
    private static double MeasureThroughput(ServedSpan span)
    {
        // The first stage's declared activation: its type (fp16 exports) and width (a 2-tensor boundary is twice the model width).
        var first = span.Stages[0].Stage;
        var input = first.Inputs.Single(i => i.Name == first.ActivationInput);
        var width = input.Shape.Count > 0 && long.TryParse(input.Shape[^1], out var declared) ? declared
            : span.Manifest.Config?.Dim ?? throw new MeshException(MeshErrorCode.InvalidManifest, "the manifest has no model config and the stage declares no width");
        var session = $"throughput-{Guid.NewGuid():N}";
        try
        {
            var watch = Stopwatch.StartNew();
            const int Steps = 4;
            for (var position = 0; position < Steps; position++)
            {
                var activation = new TensorData(input.Type, [1, 1, width], new byte[width * input.Type.ByteSize()]);
                foreach (var stage in span.Stages) activation = stage.Run(session, activation, position);
            }
            return Steps / Math.Max(watch.Elapsed.TotalSeconds, 1e-6);
        }
        finally
        {
            foreach (var stage in span.Stages) stage.CloseSession(session);
        }
    }

    /// <summary>
    /// Shuts down in order: stop accepting stage streams, drain or fail the steps in flight, dispose the
    /// executors, announce the span offline (bounded by <see cref="MeshNodeOptions.OfflineAnnounceTimeout"/>), close the host.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _log("stopping");
        if (_metricServer is not null) await _metricServer.StopAsync().ConfigureAwait(false);
        _peer.Host.RemoveHandler(StageProtocol.Id);
        _peer.AddressLearned -= OnAddressLearned;
        await _announcing.CancelAsync().ConfigureAwait(false);
        await _announceLoop.ConfigureAwait(false);
        Task reannounce;
        lock (_reannounceLock) reannounce = _reannounce;
        await reannounce.ConfigureAwait(false);
        if (_server is not null) await _server.DisposeAsync().ConfigureAwait(false);
        _span?.Dispose();
        if (_span is not null)
        {
            using var goodbye = new CancellationTokenSource(_options.OfflineAnnounceTimeout, _options.Time);
            try
            {
                await _peer.Spans.AnnounceAsync(_span.Manifest.ModelId, _span.Blocks, 0, ServerState.Offline, 0, goodbye.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is MeshException or OperationCanceledException)
            {
                _log($"could not announce going offline: {e.Message}");
            }
        }
        await _peer.DisposeAsync().ConfigureAwait(false);
        _ownedIdentity?.Dispose();
        _announcing.Dispose();
    }
}
