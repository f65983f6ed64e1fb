using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Relay;
using InferenceMesh.P2P.Security;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Hosting;

/// <summary>
/// A libp2p host: listens, dials by multiaddr (checking the <c>/p2p/</c> PeerId), upgrades every connection
/// (multistream-select → Noise → Yamux, the muxer chosen in the handshake when both sides list one),
/// keeps a pool of connections by PeerId, serves registered protocol handlers, and runs Identify and
/// Identify-push (<see cref="IdentifyProtocol"/>) and Ping (<see cref="PingProtocol"/>). Thread-safe. Typical use:
/// <code>
/// await using var host = new Libp2pHost(new Libp2pHostOptions { Identity = key });
/// await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
/// var rtt = await host.PingAsync(Multiaddr.Parse("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…"), 1, ct);
/// </code>
/// </summary>
public sealed class Libp2pHost : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Libp2pStreamHandler> _handlers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Libp2pConnection, byte> _connections = new();
    private readonly ConcurrentDictionary<PeerId, Task<Libp2pConnection>> _pendingDials = new();
    // Closes of connections taken out of the pool (idle or trimmed), awaited on dispose.
    private readonly ConcurrentDictionary<Task, byte> _closing = new();
    private readonly Task _idleSweep;
    private readonly List<ITransportListener> _listeners = [];
    private readonly List<Task> _acceptLoops = [];
    private readonly CancellationTokenSource _stopping = new();
    private readonly NoiseIdentity _noise;
    private readonly IReadOnlyList<ITransport> _transports;
    private readonly YamuxOptions _yamux;
    private readonly IdentifyProtocol _identify;
    private int _disposed;
    private volatile bool _started;

    public Libp2pHost(Libp2pHostOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.IdleConnectionTimeout <= TimeSpan.Zero && options.IdleConnectionTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(options), "IdleConnectionTimeout must be positive or Timeout.InfiniteTimeSpan");
        options.Limits.Validate();
        Options = options;
        _noise = new NoiseIdentity(options.Identity);
        _transports = options.Transports ?? [new TcpTransport(options.Pool, reusePort: options.HolePunching)];
        _yamux = options.Yamux with { Pool = options.Yamux.Pool ?? options.Pool, Log = options.Yamux.Log ?? options.Log, Time = options.Yamux.Time ?? options.Time };
        _identify = new IdentifyProtocol(this);
        _handlers[IdentifyCodec.ProtocolId] = _identify.ServeAsync;
        _handlers[IdentifyCodec.PushProtocolId] = _identify.ServePushAsync;
        _handlers[PingProtocol.ProtocolId] = PingProtocol.ServeAsync;
        Relay = new CircuitRelayClient(this);
        if (options.HolePunching)
            HolePunching = new DcutrService(this);
        _idleSweep = options.IdleConnectionTimeout == Timeout.InfiniteTimeSpan ? Task.CompletedTask : Task.Run(CloseIdleConnectionsAsync);
    }

    /// <summary>The options in force.</summary>
    public Libp2pHostOptions Options { get; }

    internal NoiseIdentity NoiseIdentity => _noise;

    /// <summary>Circuit Relay v2 client: reservations on relays, and the dialling and accepting of relayed connections.</summary>
    public CircuitRelayClient Relay { get; }

    /// <summary>DCUtR hole punching over relayed connections, or null when <see cref="Libp2pHostOptions.HolePunching"/> is off.</summary>
    public DcutrService? HolePunching { get; }

    /// <summary>
    /// Remote TCP addresses of peers a hole punch expects to take the client role (DCUtR: the peer that dialled through
    /// the relay is the client on the direct connection however the TCP handshake went), with that peer.
    /// </summary>
    internal ConcurrentDictionary<Multiaddr, PeerId> PunchClients { get; } = new();

    /// <summary>This node's PeerId.</summary>
    public PeerId PeerId => Options.Identity.PeerId;

    /// <summary>Bound listen addresses (real ports), without <c>/p2p/</c>.</summary>
    public IReadOnlyList<Multiaddr> ListenAddresses { get; private set; } = [];

    /// <summary>
    /// Addresses others can reach this host at besides its listen addresses, e.g. a port mapped on the home gateway
    /// (<see cref="Nat.PortMapper"/>). Identify announces them after the listen addresses.
    /// </summary>
    public IReadOnlyList<Multiaddr> ExternalAddresses { get; private set; } = [];

    /// <summary>Replaces <see cref="ExternalAddresses"/> and tells connected peers by Identify-push.</summary>
    public void SetExternalAddresses(IReadOnlyList<Multiaddr> addresses)
    {
        ArgumentNullException.ThrowIfNull(addresses);
        ExternalAddresses = [.. addresses];
        if (_started && _disposed == 0) _ = PushIdentifyAsync(CancellationToken.None);
    }

    /// <summary>Raised (on a pool thread) when a peer's Identify says at which address it sees this host (its <c>observedAddr</c>).</summary>
    public event Action<Libp2pConnection, Multiaddr>? AddressObserved;

    internal void OnAddressObserved(Libp2pConnection connection, Multiaddr observed) => AddressObserved?.Invoke(connection, observed);

    /// <summary>Protocol ids with a handler, sorted.</summary>
    public IReadOnlyList<string> Protocols => [.. _handlers.Keys.Order(StringComparer.Ordinal)];

    /// <summary>What the resource scopes hold now and how often each limit was hit (<see cref="Libp2pHostOptions.Limits"/>).</summary>
    public Libp2pResourceUsage Usage { get; } = new();

    /// <summary>Open connections.</summary>
    public IReadOnlyList<Libp2pConnection> Connections => [.. _connections.Keys.Where(c => !c.IsClosed)];

    /// <summary>Raised (on a pool thread) after a connection is upgraded, in either direction.</summary>
    public event Action<Libp2pConnection>? Connected;

    /// <summary>Raised when an inbound or outbound connection fails during upgrade or later ends with a protocol error. The PeerId is null when unknown.</summary>
    public event Action<Multiaddr, PeerId?, P2PException>? ConnectionFailed;

    /// <summary>
    /// Binds every address (e.g. <c>/ip4/127.0.0.1/tcp/0</c>) and starts accepting. Safe to cancel before it
    /// returns (what was bound is released on dispose).
    /// </summary>
    public async Task StartAsync(IEnumerable<Multiaddr> listenAddresses, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var bound = new List<Multiaddr>(ListenAddresses);
        foreach (var addr in listenAddresses)
        {
            var transport = FindTransport(addr);
            var listener = await transport.ListenAsync(addr, cancellationToken).ConfigureAwait(false);
            lock (_listeners) _listeners.Add(listener);
            bound.Add(listener.ListenAddress);
            _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(listener)));
        }
        ListenAddresses = bound;
        _started = true;
    }

    /// <summary>Registers (or replaces) the handler for <paramref name="protocol"/>. Connected peers learn of it by Identify-push.</summary>
    public void SetHandler(string protocol, Libp2pStreamHandler handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(protocol);
        ArgumentNullException.ThrowIfNull(handler);
        var added = _handlers.TryAdd(protocol, handler);
        if (!added) _handlers[protocol] = handler;
        if (added && _started) _ = PushIdentifyAsync(CancellationToken.None);
    }

    /// <summary>Removes a handler; false if there was none.</summary>
    public bool RemoveHandler(string protocol)
    {
        var removed = _handlers.TryRemove(protocol, out _);
        if (removed && _started) _ = PushIdentifyAsync(CancellationToken.None);
        return removed;
    }

    internal bool HasHandler(string protocol) => _handlers.ContainsKey(protocol);

    internal Libp2pStreamHandler? GetHandler(string protocol) => _handlers.GetValueOrDefault(protocol);

    /// <summary>An open connection to <paramref name="peer"/> that takes new streams, or null.</summary>
    /// <remarks>A direct connection is preferred to a relayed one.</remarks>
    public Libp2pConnection? GetConnection(PeerId peer)
    {
        Libp2pConnection? relayed = null;
        foreach (var c in _connections.Keys)
        {
            if (c.RemotePeer != peer || !c.AcceptsNewStreams)
                continue;
            if (!c.IsRelayed)
                return c;
            relayed ??= c;
        }
        return relayed;
    }

    /// <summary>An open direct (not relayed) connection to <paramref name="peer"/>, or null.</summary>
    public Libp2pConnection? GetDirectConnection(PeerId peer) => GetConnection(peer) is { IsRelayed: false } c ? c : null;

    /// <summary>
    /// Returns a connection to the peer at <paramref name="address"/>: a pooled one when the address names
    /// a PeerId already connected, otherwise a new one, refusing (PeerIdMismatch) a remote that authenticates
    /// as another PeerId than the <c>/p2p/</c> one. Concurrent dials to one PeerId share one attempt.
    /// Throws <see cref="P2PException"/>. Safe to cancel.
    /// </summary>
    public async Task<Libp2pConnection> DialAsync(Multiaddr address, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var peer = address.PeerId;
        if (peer is null)
            return await UpgradeOutboundAsync(address, null, cancellationToken).ConfigureAwait(false);
        if (peer == PeerId)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "cannot dial this host's own PeerId");
        if (GetConnection(peer) is { } existing)
            return existing;
        var task = _pendingDials.GetOrAdd(peer, p => UpgradeOutboundAsync(address, p, _stopping.Token));
        try
        {
            return await task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (task.IsCompleted) _pendingDials.TryRemove(new KeyValuePair<PeerId, Task<Libp2pConnection>>(peer, task));
        }
    }

    /// <summary>
    /// Dials a new connection to <paramref name="expected"/> at <paramref name="address"/>, never taken from the pool (an AutoNAT dial-back
    /// must prove a fresh inbound path). The connection joins the pool like any other; the caller may close it. Safe to cancel.
    /// </summary>
    internal Task<Libp2pConnection> DialNewAsync(Multiaddr address, PeerId expected, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        return UpgradeOutboundAsync(address.WithoutPeerId(), expected, cancellationToken);
    }

    /// <summary>
    /// Dials (or reuses a connection) and opens a stream for the first of <paramref name="protocols"/> the peer
    /// supports. A pooled connection that closes as the stream opens (idle on either side) is replaced by
    /// one fresh dial. Safe to cancel.
    /// </summary>
    public async Task<Libp2pStream> NewStreamAsync(Multiaddr address, IReadOnlyList<string> protocols, CancellationToken cancellationToken = default)
    {
        var conn = await DialAsync(address, cancellationToken).ConfigureAwait(false);
        return await TryOpenStreamAsync(conn, protocols, cancellationToken).ConfigureAwait(false)
            ?? await (await DialAsync(address, cancellationToken).ConfigureAwait(false)).OpenStreamAsync(protocols, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Opens a stream on <paramref name="conn"/>; null when the connection closed as the stream opened (idle on either side), for the caller to dial afresh.</summary>
    private static async Task<Libp2pStream?> TryOpenStreamAsync(Libp2pConnection conn, IReadOnlyList<string> protocols, CancellationToken cancellationToken)
    {
        try
        {
            return await conn.OpenStreamAsync(protocols, cancellationToken).ConfigureAwait(false);
        }
        catch (P2PException e) when (e.P2PCode == P2PErrorCode.ConnectionClosed && !conn.AcceptsNewStreams)
        {
            return null;
        }
    }

    /// <summary>
    /// Opens a stream to <paramref name="peer"/>: over an existing connection when there is one, else by dialling
    /// its <paramref name="addresses"/> in turn (each is given the peer's <c>/p2p/</c> component). Throws a
    /// <see cref="P2PException"/> when none works. Safe to cancel.
    /// </summary>
    public async Task<Libp2pStream> NewStreamAsync(PeerId peer, IReadOnlyList<Multiaddr> addresses, IReadOnlyList<string> protocols, CancellationToken cancellationToken = default)
    {
        if (GetConnection(peer) is { } existing && await TryOpenStreamAsync(existing, protocols, cancellationToken).ConfigureAwait(false) is { } pooled)
            return pooled;
        Exception? last = null;
        foreach (var address in addresses)
        {
            try
            {
                return await NewStreamAsync(address.PeerId is null ? address.WithPeerId(peer) : address, protocols, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException or IOException or System.Net.Sockets.SocketException)
            {
                last = e;
            }
        }
        throw last as P2PException ?? new P2PException(P2PErrorCode.DialFailed, last is null ? $"no address known for {peer}" : $"cannot reach {peer}: {last.Message}");
    }

    /// <summary>Dials (or reuses a connection) and runs <paramref name="count"/> pings; returns each round-trip time. Safe to cancel.</summary>
    public async Task<IReadOnlyList<TimeSpan>> PingAsync(Multiaddr address, int count = 1, CancellationToken cancellationToken = default)
    {
        var conn = await DialAsync(address, cancellationToken).ConfigureAwait(false);
        return await PingProtocol.PingAsync(conn, count, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sends Identify-push to every connected peer; failures are logged, not thrown. Safe to cancel.</summary>
    public Task PushIdentifyAsync(CancellationToken cancellationToken = default) => _identify.PushAsync(cancellationToken);

    internal IReadOnlyList<ITransport> Transports => _transports;

    private ITransport FindTransport(Multiaddr addr) =>
        _transports.FirstOrDefault(t => t.CanHandle(addr))
        ?? throw new P2PException(P2PErrorCode.NoTransport, $"no transport for {addr}");

    // ---------------- upgrade ----------------

    private async Task<Libp2pConnection> UpgradeOutboundAsync(Multiaddr address, PeerId? expected, CancellationToken cancellationToken)
    {
        var circuit = CircuitRelayClient.IsCircuit(address);
        var transport = circuit ? null : FindTransport(address);
        using var timeout = new Deadline(Options.HandshakeTimeout, Options.Time, cancellationToken, _stopping.Token);
        if (!Usage.TryReserveMemory(Options.Limits.MemoryPerConnection, Options.Limits.MaxConnectionMemory))
        {
            var message = $"dial to {address} refused: connection memory budget of {Options.Limits.MaxConnectionMemory} bytes is full";
            LimitHit(Libp2pLimit.ConnectionMemory, message);
            throw new P2PException(P2PErrorCode.LimitExceeded, message);
        }
        ITransportConnection raw;
        try
        {
            raw = transport is null
                ? await Relay.DialCircuitAsync(address, timeout.Token).ConfigureAwait(false)
                : await transport.DialAsync(address.WithoutPeerId(), timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            Usage.ReleaseMemory(Options.Limits.MemoryPerConnection);
            throw new P2PException(P2PErrorCode.Timeout, $"connecting to {address} timed out", e);
        }
        catch
        {
            Usage.ReleaseMemory(Options.Limits.MemoryPerConnection);
            throw;
        }
        return await UpgradeAsync(raw, true, expected, timeout.Token, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Counts a hit of <paramref name="limit"/> and logs it: the first ten hits of each limit, then every
    /// thousandth, so an attack leaves a trace without flooding the log.
    /// </summary>
    internal void LimitHit(Libp2pLimit limit, string message)
    {
        Usage.Hit(limit);
        var hits = Usage.Hits(limit);
        if (!_stopping.IsCancellationRequested && (hits <= 10 || hits % 1000 == 0))
            Options.Log?.Invoke($"limit {limit} hit ({hits} so far): {message}");
    }

    /// <summary>The per-address and per-subnet scopes a pending inbound connection from <paramref name="remote"/> counts in.</summary>
    private (string Key, int Max, Libp2pLimit Limit)[] PendingScopes(Multiaddr remote)
    {
        var limits = Options.Limits;
        if (remote.TryGetTcpEndPoint() is not { } ep)
            return [("addr " + remote, limits.MaxPendingInboundPerIp, Libp2pLimit.PendingInboundPerIp)];
        var ip = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
        var prefix = ip.AddressFamily == AddressFamily.InterNetwork ? limits.SubnetPrefixV4 : limits.SubnetPrefixV6;
        var bytes = ip.GetAddressBytes();
        for (var bit = prefix; bit < bytes.Length * 8; bit++)
            bytes[bit / 8] &= (byte)~(0x80 >> (bit % 8));
        return
        [
            ("ip " + ip, limits.MaxPendingInboundPerIp, Libp2pLimit.PendingInboundPerIp),
            ($"net {new IPAddress(bytes)}/{prefix}", limits.MaxPendingInboundPerSubnet, Libp2pLimit.PendingInboundPerSubnet),
        ];
    }
    /// <summary>
    /// Upgrades a raw connection opened outside the transports (a relayed circuit, a hole-punched socket) and pools it.
    /// <paramref name="asClient"/> picks the Noise initiator / multistream dialer role; <paramref name="expected"/>, when
    /// given, must be the remote's authenticated PeerId. Safe to cancel.
    /// </summary>
    internal async Task<Libp2pConnection> UpgradeRawAsync(ITransportConnection raw, bool asClient, PeerId? expected, CancellationToken cancellationToken)
    {
        using var timeout = new Deadline(Options.HandshakeTimeout, Options.Time, cancellationToken, _stopping.Token);
        var conn = await UpgradeAsync(raw, asClient, asClient ? expected : null, timeout.Token, cancellationToken).ConfigureAwait(false);
        if (expected is not null && conn.RemotePeer != expected)
        {
            Close(conn);
            throw new P2PException(P2PErrorCode.PeerIdMismatch, $"expected {expected} on {raw.RemoteAddress}, but {conn.RemotePeer} authenticated");
        }
        return conn;
    }

    internal Task<Libp2pConnection> UpgradeInboundAsync(ITransportConnection raw, PeerId expected, CancellationToken cancellationToken) =>
        UpgradeRawAsync(raw, false, expected, cancellationToken);

    private async Task<Libp2pConnection> UpgradeAsync(ITransportConnection raw, bool outbound, PeerId? expected, CancellationToken token, CancellationToken callerToken)
    {
        NoiseSecureChannel? channel = null;
        try
        {
            if (outbound)
                await Multistream.SelectAsync(raw, [Noise.ProtocolId], token).ConfigureAwait(false);
            else
                await Multistream.ListenAsync(raw, p => p == Noise.ProtocolId, token).ConfigureAwait(false);
            var muxers = Options.EarlyMuxerNegotiation ? Noise.MuxerSupport : [];
            channel = outbound
                ? await Noise.InitiateAsync(raw, _noise, muxers, expected, Options.Pool, token).ConfigureAwait(false)
                : await Noise.RespondAsync(raw, _noise, muxers, Options.Pool, token).ConfigureAwait(false);
            var early = channel.SelectedMuxer is not null;
            var muxer = channel.SelectedMuxer
                ?? (outbound
                    ? await Multistream.SelectAsync(channel, [YamuxSession.ProtocolId], token).ConfigureAwait(false)
                    : await Multistream.ListenAsync(channel, p => p == YamuxSession.ProtocolId, token).ConfigureAwait(false));
            var session = new YamuxSession(channel, isClient: outbound, _yamux);
            var remote = channel.RemotePeer;
            session.StreamRefused = () => LimitHit(Libp2pLimit.StreamsPerConnection,
                $"stream from {remote} refused: {_yamux.MaxConcurrentStreams} streams open on its connection");
            var conn = new Libp2pConnection(this, channel, session, outbound, muxer, early);
            string? refusal = null;
            if (_disposed != 0)
                refusal = "the host is closing";
            else if (!outbound && _connections.Keys.Count(c => c.RemotePeer == remote && !c.IsClosed) >= Options.Limits.MaxConnectionsPerPeer)
            {
                refusal = $"inbound connection from {remote} at {raw.RemoteAddress} refused: {Options.Limits.MaxConnectionsPerPeer} connections with that peer open";
                LimitHit(Libp2pLimit.ConnectionsPerPeer, refusal);
            }
            else if (_connections.Count >= Options.MaxConnections && !TryMakeRoom() && !outbound)
            {
                refusal = $"connection limit of {Options.MaxConnections} reached";
                LimitHit(Libp2pLimit.Connections, $"inbound connection from {remote} at {raw.RemoteAddress} refused: {refusal}");
            }
            if (refusal is not null)
            {
                await session.DisposeAsync().ConfigureAwait(false);
                await channel.CloseAsync().ConfigureAwait(false);
                throw new P2PException(P2PErrorCode.LimitExceeded, refusal);
            }
            _connections[conn] = 0;
            conn.Start();
            if (Options.AutoIdentify)
                _ = IdentifyQuietlyAsync(conn);
            Connected?.Invoke(conn);
            return conn;
        }
        catch (Exception e)
        {
            Usage.ReleaseMemory(Options.Limits.MemoryPerConnection);
            var error = e switch
            {
                P2PException p => p,
                OperationCanceledException when !callerToken.IsCancellationRequested =>
                    new P2PException(P2PErrorCode.Timeout, $"connection upgrade with {raw.RemoteAddress} timed out", e),
                OperationCanceledException => null,
                _ => new P2PException(P2PErrorCode.ConnectionClosed, $"connection upgrade with {raw.RemoteAddress} failed: {e.Message}", e),
            };
            if (channel is not null)
                await channel.CloseAsync(TimeSpan.Zero).ConfigureAwait(false);
            else
                await raw.DisposeAsync().ConfigureAwait(false);
            if (error is null)
                throw;
            if (error.P2PCode == P2PErrorCode.Timeout)
                LimitHit(Libp2pLimit.UpgradeTimeout, $"{(outbound ? "outbound" : "inbound")} connection with {raw.RemoteAddress} not upgraded within {Options.HandshakeTimeout.TotalSeconds:0.###} s");
            ReportFailure(raw.RemoteAddress, channel?.RemotePeer, error);
            if (ReferenceEquals(error, e)) throw;
            throw error;
        }
    }

    internal void ReportFailure(Multiaddr address, PeerId? peer, P2PException error)
    {
        if (_stopping.IsCancellationRequested)
            return;
        Options.Log?.Invoke($"connection {address}{(peer is null ? "" : " " + peer)} closed: {error.P2PCode}: {error.Message}");
        ConnectionFailed?.Invoke(address, peer, error);
    }

    internal void Remove(Libp2pConnection conn) => _connections.TryRemove(conn, out _);

    // ---------------- idle connections ----------------

    /// <summary>A connection set up this recently is not trimmed: it may be about to open its first stream.</summary>
    private static readonly TimeSpan MinIdleToTrim = TimeSpan.FromSeconds(1);

    private async Task CloseIdleConnectionsAsync()
    {
        var timeout = Options.IdleConnectionTimeout;
        var period = TimeSpan.FromTicks(Math.Clamp(timeout.Ticks / 4, TimeSpan.FromMilliseconds(50).Ticks, TimeSpan.FromSeconds(15).Ticks));
        using var timer = new PeriodicTimer(period, Options.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                foreach (var conn in _connections.Keys)
                {
                    if (!conn.IsClosed && !conn.KeepAlive && conn.IdleTime >= timeout)
                        Close(conn);
                }
            }
        }
        catch (OperationCanceledException)
        {
            // the host is stopping
        }
    }

    /// <summary>Closes the live connection idle the longest (at least <see cref="MinIdleToTrim"/>); false when none is.</summary>
    private bool TryMakeRoom()
    {
        Libp2pConnection? idlest = null;
        var longest = MinIdleToTrim;
        foreach (var conn in _connections.Keys)
        {
            if (conn.IsClosed || conn.KeepAlive)
                continue;
            var idle = conn.IdleTime;
            if (idle >= longest)
            {
                idlest = conn;
                longest = idle;
            }
        }
        return idlest is not null && Close(idlest);
    }

    /// <summary>Takes a connection out of the pool and closes it in the background; false if another caller took it first.</summary>
    private bool Close(Libp2pConnection conn)
    {
        if (!_connections.TryRemove(conn, out _))
            return false;
        var closing = conn.DisposeAsync().AsTask();
        _closing[closing] = 0;
        _ = closing.ContinueWith(t => _closing.TryRemove(t, out _), TaskScheduler.Default);
        return true;
    }

    private async Task IdentifyQuietlyAsync(Libp2pConnection conn)
    {
        try
        {
            using var timeout = new Deadline(Options.HandshakeTimeout, Options.Time, _stopping.Token);
            await conn.IdentifyAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is P2PException or OperationCanceledException or InvalidOperationException)
        {
            if (!conn.IsClosed && !_stopping.IsCancellationRequested)
                Options.Log?.Invoke($"identify with {conn.RemotePeer} failed: {Libp2pConnection.Describe(e)}");
        }
    }

    private async Task AcceptLoopAsync(ITransportListener listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            ITransportConnection raw;
            try
            {
                raw = await listener.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException)
            {
                return;
            }
            var scopes = PendingScopes(raw.RemoteAddress);
            var refused = Usage.TryAddPending(Options.Limits.MaxPendingInbound, scopes);
            if (refused is not null)
            {
                LimitHit(refused.Value, $"inbound connection from {raw.RemoteAddress} refused: {Usage.PendingInbound} connections not yet upgraded ({refused.Value} budget full)");
                await raw.DisposeAsync().ConfigureAwait(false);
                continue;
            }
            string? refusal = null;
            if (_connections.Count >= Options.MaxConnections && !TryMakeRoom())
            {
                refusal = $"inbound connection from {raw.RemoteAddress} refused: {Options.MaxConnections} connections open";
                LimitHit(Libp2pLimit.Connections, refusal);
            }
            else if (!Usage.TryReserveMemory(Options.Limits.MemoryPerConnection, Options.Limits.MaxConnectionMemory))
            {
                refusal = $"inbound connection from {raw.RemoteAddress} refused: connection memory budget of {Options.Limits.MaxConnectionMemory} bytes is full";
                LimitHit(Libp2pLimit.ConnectionMemory, refusal);
            }
            if (refusal is not null)
            {
                Usage.RemovePending(scopes);
                await raw.DisposeAsync().ConfigureAwait(false);
                continue;
            }
            _ = Task.Run(async () =>
            {
                using var timeout = new Deadline(Options.HandshakeTimeout, Options.Time, _stopping.Token);
                try
                {
                    // A hole punch's TCP handshake may land on this listener; DCUtR makes the peer that dialled
                    // through the relay the client anyway.
                    if (PunchClients.TryRemove(raw.RemoteAddress, out var punched))
                        await UpgradeAsync(raw, true, punched, timeout.Token, CancellationToken.None).ConfigureAwait(false);
                    else
                        await UpgradeAsync(raw, false, null, timeout.Token, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception e) when (e is P2PException or OperationCanceledException)
                {
                    // reported by UpgradeAsync
                }
                finally
                {
                    Usage.RemovePending(scopes);
                }
            });
        }
    }

    /// <summary>Stops listening and closes every connection. Not safe to cancel; bounded to a few seconds.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _stopping.Cancel();
        await Relay.DisposeAsync().ConfigureAwait(false);
        if (HolePunching is not null)
            await HolePunching.DisposeAsync().ConfigureAwait(false);
        List<ITransportListener> listeners;
        lock (_listeners) listeners = [.. _listeners];
        foreach (var l in listeners)
            await l.DisposeAsync().ConfigureAwait(false);
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
        await Task.WhenAll(_connections.Keys.Select(c => c.DisposeAsync().AsTask())).ConfigureAwait(false);
        await _idleSweep.ConfigureAwait(false);
        await Task.WhenAll(_closing.Keys).ConfigureAwait(false);
        _noise.Dispose();
        _stopping.Dispose();
    }
}
