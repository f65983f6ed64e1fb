using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Relay;

/// <summary>
/// DCUtR (<c>/libp2p/dcutr</c>, libp2p/specs relay/DCUtR.md): turns a relayed connection into a direct one by TCP
/// hole punching. The peer that accepted the relayed connection (B) sends CONNECT with its addresses, measures the
/// round trip to the answering CONNECT, sends SYNC and after half that round trip dials; the other peer (A) dials as
/// soon as SYNC arrives. Both dial from their listen port (SO_REUSEPORT) so the two SYNs cross as a simultaneous
/// open; A is the client of the direct connection whatever way the TCP handshake went. The relayed connection stays
/// open and in use when punching fails. Created by the host when <see cref="Libp2pHostOptions.HolePunching"/> is on;
/// thread-safe.
/// </summary>
public sealed class DcutrService : IAsyncDisposable
{
    /// <summary>The protocol id.</summary>
    public const string ProtocolId = "/libp2p/dcutr";

    /// <summary>Largest HolePunch message accepted, in bytes.</summary>
    public const int MaxMessage = 4096;

    /// <summary>Punch attempts before giving up (the spec's three).</summary>
    public const int Attempts = 3;

    private const int MaxAddresses = 16;
    private const ulong TypeConnect = 100;
    private const ulong TypeSync = 300;

    private readonly Libp2pHost _host;
    private readonly ConcurrentDictionary<Task, byte> _running = new();
    private readonly CancellationTokenSource _stopping = new();
    private long _succeeded;
    private long _failed;
    private int _disposed;

    internal DcutrService(Libp2pHost host)
    {
        _host = host;
        host.SetHandler(ProtocolId, ServeAsync);
        host.Connected += OnConnected;
    }

    /// <summary>Hole punches that ended with a direct connection.</summary>
    public long Succeeded => Interlocked.Read(ref _succeeded);

    /// <summary>Hole punches that gave up (the relayed connection stays in use).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Raised (on a pool thread) when a punch started by this side ends: the peer, the direct connection or null, and the relayed round trip measured.</summary>
    public event Action<PeerId, Libp2pConnection?, TimeSpan?>? Finished;

    private TimeSpan Timeout => _host.Options.HandshakeTimeout;

    private void OnConnected(Libp2pConnection conn)
    {
        if (!conn.IsRelayed || conn.IsOutbound || _stopping.IsCancellationRequested)
            return;
        var task = Task.Run(async () =>
        {
            try
            {
                await UpgradeAsync(conn, _stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException)
            {
                if (!_stopping.IsCancellationRequested)
                    _host.Options.Log?.Invoke($"dcutr: no direct connection to {conn.RemotePeer}: {(e is P2PException p ? $"{p.P2PCode}: " : "")}{e.Message}");
            }
        });
        _running[task] = 0;
        _ = task.ContinueWith(t => _running.TryRemove(t, out _), TaskScheduler.Default);
    }

    /// <summary>
    /// Runs DCUtR as the initiator (B) over <paramref name="relayed"/>: up to <see cref="Attempts"/> tries, and returns
    /// the direct connection. Throws <see cref="P2PException"/> (DialFailed when every try failed, InvalidEncoding or
    /// ProtocolViolation for a peer that answers garbage). Safe to cancel.
    /// </summary>
    public async Task<Libp2pConnection> UpgradeAsync(Libp2pConnection relayed, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(relayed);
        var peer = relayed.RemotePeer;
        if (_host.GetDirectConnection(peer) is { } existing)
            return existing;
        TimeSpan? rtt = null;
        P2PException? last = null;
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            using var timeout = new Deadline(Timeout, _host.Options.Time, cancellationToken, _stopping.Token);
            try
            {
                await using var stream = await relayed.OpenStreamAsync(ProtocolId, timeout.Token).ConfigureAwait(false);
                var clock = Stopwatch.StartNew();
                await SendAsync(stream, TypeConnect, LocalAddresses(), timeout.Token).ConfigureAwait(false);
                var (type, theirs) = await ReceiveAsync(stream, timeout.Token).ConfigureAwait(false);
                rtt = clock.Elapsed;
                if (type != TypeConnect)
                    throw new P2PException(P2PErrorCode.ProtocolViolation, $"{peer} answered CONNECT with HolePunch type {type}");
                await SendAsync(stream, TypeSync, [], timeout.Token).ConfigureAwait(false);
                await Task.Delay(rtt.Value / 2, _host.Options.Time, timeout.Token).ConfigureAwait(false);
                _host.Options.Log?.Invoke($"dcutr: hole punching {peer} (attempt {attempt + 1} of {Attempts}, relayed round trip {rtt.Value.TotalMilliseconds:F1} ms, {theirs.Count} addresses)");
                var direct = await PunchAsync(peer, theirs, asClient: false, timeout.Token).ConfigureAwait(false);
                if (direct is not null)
                {
                    _host.Options.Log?.Invoke($"dcutr: direct connection to {peer} ({direct.RemoteAddress})");
                    Interlocked.Increment(ref _succeeded);
                    Finished?.Invoke(peer, direct, rtt);
                    return direct;
                }
                last = new P2PException(P2PErrorCode.DialFailed, $"hole punch to {peer} found no direct path (attempt {attempt + 1} of {Attempts})");
            }
            catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested && !_stopping.IsCancellationRequested)
            {
                last = new P2PException(P2PErrorCode.Timeout, $"hole punch with {peer} timed out", e);
            }
            catch (P2PException e) when (e.P2PCode is P2PErrorCode.DialFailed or P2PErrorCode.Timeout)
            {
                last = e;
            }
            catch (P2PException)
            {
                Interlocked.Increment(ref _failed);
                Finished?.Invoke(peer, null, rtt);
                throw;
            }
            if (relayed.IsClosed)
                break;
        }
        Interlocked.Increment(ref _failed);
        Finished?.Invoke(peer, null, rtt);
        throw last ?? new P2PException(P2PErrorCode.DialFailed, $"hole punch to {peer} failed");
    }

    private async Task ServeAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var peer = stream.Connection.RemotePeer;
        if (!stream.Connection.IsRelayed)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"{peer} asked for a hole punch over a direct connection");
        var registered = new List<Multiaddr>();
        try
        {
            using var timeout = new Deadline(Timeout, _host.Options.Time, cancellationToken, _stopping.Token);
            var (type, theirs) = await ReceiveAsync(stream, timeout.Token).ConfigureAwait(false);
            if (type != TypeConnect)
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"{peer} opened DCUtR with HolePunch type {type}, not CONNECT");
            var asClient = !await PeerTakesTheClientRoleAsync(stream.Connection, timeout.Token).ConfigureAwait(false);
            foreach (var address in asClient ? theirs : [])
            {
                if (DirectTcpEndPoint(address) is { } ep)
                {
                    var key = Multiaddr.FromTcpEndPoint(ep);
                    _host.PunchClients[key] = peer;
                    registered.Add(key);
                }
            }
            await SendAsync(stream, TypeConnect, LocalAddresses(), timeout.Token).ConfigureAwait(false);
            var (sync, _) = await ReceiveAsync(stream, timeout.Token).ConfigureAwait(false);
            if (sync != TypeSync)
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"{peer} sent HolePunch type {sync} where SYNC was expected");
            await PunchAsync(peer, theirs, asClient, timeout.Token).ConfigureAwait(false);
        }
        finally
        {
            foreach (var key in registered)
                _host.PunchClients.TryRemove(new KeyValuePair<Multiaddr, PeerId>(key, peer));
        }
    }

    /// <summary>
    /// Whether the peer that started this hole punch (B) will act as the client of the direct connection although the spec
    /// makes it the server. js-libp2p does (3.3.11 at least): its DCUtR dials with <c>initiator: false</c>, but the dial
    /// queue does not pass that option on to the transport, so its punch runs multistream-select and Noise as the initiator.
    /// Two initiators on one simultaneous-open connection each read the other's first Noise message as the second and both
    /// fail, so against js-libp2p (its agent version starts with <c>js-libp2p/</c>; go-, rust- and nim-libp2p name themselves
    /// otherwise) this side takes the server role. Waits up to a second for Identify on the relayed connection; without it,
    /// the spec's roles.
    /// </summary>
    private async Task<bool> PeerTakesTheClientRoleAsync(Libp2pConnection relayed, CancellationToken cancellationToken)
    {
        if (relayed.RemoteInfo is null)
        {
            var identified = relayed.Identified;
            await Task.WhenAny(identified, Task.Delay(TimeSpan.FromSeconds(1), _host.Options.Time, cancellationToken)).ConfigureAwait(false);
            cancellationToken.ThrowIfCancellationRequested();
        }
        return relayed.RemoteInfo?.AgentVersion?.StartsWith("js-libp2p/", StringComparison.Ordinal) == true;
    }

    /// <summary>Dials every TCP address of the peer from the listen port, then waits for a direct connection to show up either way.</summary>
    private async Task<Libp2pConnection?> PunchAsync(PeerId peer, IReadOnlyList<Multiaddr> addresses, bool asClient, CancellationToken cancellationToken)
    {
        var tcp = _host.Transports.OfType<TcpTransport>().FirstOrDefault(t => t.ReusesPort);
        var dials = new List<Task<Libp2pConnection?>>();
        foreach (var address in addresses.Take(MaxAddresses))
        {
            if (tcp is null || DirectTcpEndPoint(address) is not { } remote)
                continue;
            dials.Add(DialOneAsync(tcp, LocalEndPoint(remote.AddressFamily), remote, peer, asClient, cancellationToken));
        }
        // The first dial that connects wins: a listed address that leads nowhere (the peer's LAN address, seen from
        // another home) hangs until the deadline and must not hold up the one that punched through. The other side's
        // SYN may instead have reached our listener: that connection's upgrade shows up in the pool.
        while (!cancellationToken.IsCancellationRequested)
        {
            if (dials.FirstOrDefault(d => d.IsCompletedSuccessfully && d.Result is not null) is { } won)
                return won.Result;
            if (_host.GetDirectConnection(peer) is { } direct)
                return direct;
            var tick = Task.Delay(TimeSpan.FromMilliseconds(20), _host.Options.Time, cancellationToken);
            await Task.WhenAny(dials.Where(d => !d.IsCompleted).Append(tick)).ConfigureAwait(false);
        }
        return null;
    }

    /// <summary>Dials from the listen port, or (a peer that does not listen, such as a client) from any port, which still opens an endpoint-independent NAT.</summary>
    private async Task<Libp2pConnection?> DialOneAsync(TcpTransport tcp, IPEndPoint? local, IPEndPoint remote, PeerId peer, bool asClient, CancellationToken cancellationToken)
    {
        try
        {
            var raw = local is null
                ? await tcp.DialAsync(Multiaddr.FromTcpEndPoint(remote), cancellationToken).ConfigureAwait(false)
                : await tcp.DialFromAsync(local, remote, cancellationToken).ConfigureAwait(false);
            return await _host.UpgradeRawAsync(raw, asClient, peer, cancellationToken).ConfigureAwait(false);
        }
        catch (P2PException e)
        {
            _host.Options.Log?.Invoke($"dcutr: dial {remote} from {local} failed: {e.P2PCode}: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// The TCP endpoint to punch to, or null: a <c>/p2p-circuit</c> address (js-libp2p lists its circuit addresses in CONNECT)
    /// starts with the relay's endpoint, and dialling that would reach the relay, not the peer.
    /// </summary>
    private static IPEndPoint? DirectTcpEndPoint(Multiaddr address) =>
        address.Components.Any(c => c.Protocol == MultiaddrProtocol.P2pCircuit) ? null : address.TryGetTcpEndPoint();

    private IPEndPoint? LocalEndPoint(System.Net.Sockets.AddressFamily family) =>
        _host.ListenAddresses.Select(a => a.TryGetTcpEndPoint()).FirstOrDefault(ep => ep is not null && ep.AddressFamily == family);

    /// <summary>The addresses this host tells the peer to dial: its TCP listen addresses and the addresses peers observed.</summary>
    private List<Multiaddr> LocalAddresses()
    {
        var observed = _host.Connections.Where(c => !c.IsRelayed).Select(c => c.RemoteInfo?.ObservedAddress).OfType<Multiaddr>();
        return MeshPeer.Advertised(_host.ListenAddresses).Concat(observed)
            .Where(a => a.TryGetTcpEndPoint() is not null).Distinct().Take(MaxAddresses).ToList();
    }

    private static async Task SendAsync(Libp2pStream stream, ulong type, IReadOnlyList<Multiaddr> addresses, CancellationToken cancellationToken)
    {
        var w = new ProtoWriter();
        w.WriteVarint(1, type);
        foreach (var a in addresses) w.WriteBytes(2, a.Span);
        LengthPrefixed.Write(stream.Output, w.WrittenSpan);
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one HolePunch message: (type, ObsAddrs). Throws <see cref="P2PException"/> on garbage or EOF.</summary>
    private static async Task<(ulong Type, IReadOnlyList<Multiaddr> Addresses)> ReceiveAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var bytes = await LengthPrefixed.ReadAsync(stream.Input, MaxMessage, cancellationToken).ConfigureAwait(false)
            ?? throw new P2PException(P2PErrorCode.ConnectionClosed, $"{stream.Connection.RemotePeer} closed the DCUtR stream");
        var r = new ProtoReader(bytes);
        ulong? type = null;
        var addresses = new List<Multiaddr>();
        while (r.TryReadTag(out var f))
        {
            if (f == 1)
            {
                type = r.ReadVarintField();
            }
            else if (f == 2)
            {
                var a = r.ReadBytes();
                if (addresses.Count >= MaxAddresses)
                    throw new P2PException(P2PErrorCode.LimitExceeded, $"HolePunch lists more than {MaxAddresses} addresses");
                try { addresses.Add(Multiaddr.FromBytes(a)); } catch (P2PException) { /* a transport we do not know */ }
            }
            else
            {
                r.Skip();
            }
        }
        if (type is not (TypeConnect or TypeSync))
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"HolePunch message has type {type?.ToString() ?? "none"}, not CONNECT (100) or SYNC (300)");
        return (type.Value, addresses);
    }

    /// <summary>Stops starting punches and waits for those running. Not safe to cancel.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _host.Connected -= OnConnected;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_running.Keys).ConfigureAwait(false);
        _stopping.Dispose();
    }
}
