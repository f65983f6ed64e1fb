using InferenceMesh.P2P.Identity;
using System.Net;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Protocols;

namespace InferenceMesh.P2P.Nat;

/// <summary>
/// AutoNAT v1 (<c>/libp2p/autonat/1.0.0</c>), server and client, on one host.
/// <para>Server: answers a <c>DIAL</c> from a peer whose request names itself, by dialling back on a new connection only addresses on the
/// IP it is observed at (its listed addresses on that IP, the observed address, and the observed IP with each listed TCP port, at most
/// <see cref="AutoNatOptions.MaxDialBackAddresses"/>), never over a connection without an IP; rate-limited globally and per peer.</para>
/// <para>Client: <see cref="CheckAsync"/> asks connected peers that speak the protocol and sets <see cref="Reachability"/> once
/// <see cref="AutoNatOptions.Confirmations"/> answers agree.</para>
/// Thread-safe.
/// </summary>
public sealed class AutoNatService
{
    /// <summary>The protocol id.</summary>
    public const string ProtocolId = "/libp2p/autonat/1.0.0";

    private readonly Libp2pHost _host;
    private readonly AutoNatOptions _options;
    private readonly Lock _rateLock = new();
    private readonly Queue<long> _recent = new();
    private readonly Dictionary<PeerId, Queue<long>> _recentByPeer = [];
    private int _reachability;

    /// <summary>Registers the server handler on <paramref name="host"/>.</summary>
    public AutoNatService(Libp2pHost host, AutoNatOptions options)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Confirmations, 1);
        _host = host;
        _options = options;
        host.SetHandler(ProtocolId, ServeAsync);
    }

    /// <summary>What the last conclusive check found; <see cref="Nat.Reachability.Unknown"/> before one.</summary>
    public Reachability Reachability => (Reachability)Volatile.Read(ref _reachability);

    /// <summary>Raised (on a pool thread) when <see cref="Reachability"/> changes.</summary>
    public event Action<Reachability>? ReachabilityChanged;

    /// <summary>Asks <paramref name="server"/> to dial <paramref name="addresses"/> back. Throws <see cref="P2PException"/> for a malformed or missing answer. Safe to cancel.</summary>
    public async Task<AutoNatResult> RequestAsync(Libp2pConnection server, IReadOnlyList<Multiaddr> addresses, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(server);
        await using var stream = await server.OpenStreamAsync(ProtocolId, cancellationToken).ConfigureAwait(false);
        LengthPrefixed.Write(stream.Output, AutoNatMessage.EncodeDial(_host.PeerId, addresses.Select(a => a.WithoutPeerId()).Take(AutoNatMessage.MaxAddresses)));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        var bytes = await LengthPrefixed.ReadAsync(stream.Input, _options.MaxMessageBytes, cancellationToken).ConfigureAwait(false)
            ?? throw new P2PException(P2PErrorCode.ProtocolViolation, $"AutoNAT: {server.RemotePeer} closed the stream without a response");
        var response = AutoNatMessage.Decode(bytes);
        if (response.IsDial)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"AutoNAT: {server.RemotePeer} answered a dial with a dial");
        return new AutoNatResult(server.RemotePeer, response.Status, response.Text, response.Address);
    }

    /// <summary>
    /// Asks up to <see cref="AutoNatOptions.MaxServersPerCheck"/> connected peers that speak AutoNAT to dial <paramref name="addresses"/> back, and
    /// returns (and records, when conclusive) the verdict: public after <see cref="AutoNatOptions.Confirmations"/> successes, private after as many
    /// dial errors, otherwise unknown. Failed or refused requests count for neither. Safe to cancel.
    /// </summary>
    public async Task<Reachability> CheckAsync(IReadOnlyList<Multiaddr> addresses, CancellationToken cancellationToken)
    {
        var servers = _host.Connections
            .Where(c => c.RemoteInfo?.Protocols.Contains(ProtocolId) == true && c.RemoteAddress.TryGetTcpEndPoint() is not null)
            .DistinctBy(c => c.RemotePeer)
            .Take(_options.MaxServersPerCheck)
            .ToList();
        var answers = await Task.WhenAll(servers.Select(async s =>
        {
            using var timer = new CancellationTokenSource(_options.RequestTimeout, _options.Time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
            try
            {
                return await RequestAsync(s, addresses, linked.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException || (e is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                _host.Options.Log?.Invoke($"AutoNAT request to {s.RemotePeer} failed: {e.Message}");
                return null;
            }
        })).ConfigureAwait(false);
        var ok = answers.Count(a => a?.Status == AutoNatStatus.Ok);
        var failed = answers.Count(a => a?.Status == AutoNatStatus.DialError);
        var verdict = ok >= _options.Confirmations ? Reachability.Public : failed >= _options.Confirmations ? Reachability.Private : Reachability.Unknown;
        if (verdict != Reachability.Unknown && Interlocked.Exchange(ref _reachability, (int)verdict) != (int)verdict)
            ReachabilityChanged?.Invoke(verdict);
        return verdict;
    }

    private async Task ServeAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var bytes = await LengthPrefixed.ReadAsync(stream.Input, _options.MaxMessageBytes, cancellationToken).ConfigureAwait(false);
        if (bytes is null)
            return;
        var (status, text, address) = await AnswerAsync(stream.Connection, bytes, cancellationToken).ConfigureAwait(false);
        LengthPrefixed.Write(stream.Output, AutoNatMessage.EncodeResponse(status, text, address));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    private async Task<(AutoNatStatus, string, Multiaddr?)> AnswerAsync(Libp2pConnection connection, byte[] bytes, CancellationToken cancellationToken)
    {
        AutoNatMessage request;
        try
        {
            request = AutoNatMessage.Decode(bytes);
        }
        catch (P2PException e)
        {
            return (AutoNatStatus.BadRequest, e.Message, null);
        }
        if (!request.IsDial || request.Peer != connection.RemotePeer)
            return (AutoNatStatus.BadRequest, "the request must be a dial naming the requesting peer", null);
        if (connection.RemoteAddress.TryGetTcpEndPoint() is not { } observed)
            return (AutoNatStatus.DialRefused, "no observed IP on this connection", null);
        var candidates = Candidates(observed, request.Addresses);
        if (candidates.Count == 0)
            return (AutoNatStatus.DialRefused, "no address on the observed IP", null);
        if (!TryAdmit(connection.RemotePeer))
            return (AutoNatStatus.DialRefused, "rate limited", null);

        using var timer = new CancellationTokenSource(_options.DialBackTimeout, _options.Time);
        using var dials = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        var attempts = candidates.Select(a => DialBackAsync(a, connection.RemotePeer, dials.Token)).ToList();
        while (attempts.Count > 0)
        {
            var done = await Task.WhenAny(attempts).ConfigureAwait(false);
            attempts.Remove(done);
            if (await done.ConfigureAwait(false) is { } reached)
            {
                await dials.CancelAsync().ConfigureAwait(false);
                await Task.WhenAll(attempts).ConfigureAwait(false);
                return (AutoNatStatus.Ok, "dialled back", reached);
            }
        }
        return (AutoNatStatus.DialError, $"no dial back to {candidates.Count} address(es) succeeded", null);
    }

    /// <summary>The addresses dialled back, all on the observed IP (the spec's guard against using the server to attack a third party).</summary>
    private List<Multiaddr> Candidates(IPEndPoint observed, IReadOnlyList<Multiaddr> listed)
    {
        var tcp = listed.Select(a => a.TryGetTcpEndPoint()).OfType<IPEndPoint>().ToList();
        return tcp.Where(e => e.Address.Equals(observed.Address))
            .Append(observed)
            .Concat(tcp.Select(e => new IPEndPoint(observed.Address, e.Port)))
            .Distinct()
            .Take(_options.MaxDialBackAddresses)
            .Select(Multiaddr.FromTcpEndPoint)
            .ToList();
    }

    private async Task<Multiaddr?> DialBackAsync(Multiaddr address, PeerId peer, CancellationToken cancellationToken)
    {
        try
        {
            var connection = await _host.DialNewAsync(address, peer, cancellationToken).ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
            return address;
        }
        catch (Exception e) when (e is P2PException or OperationCanceledException or IOException or System.Net.Sockets.SocketException)
        {
            return null;
        }
    }

    private bool TryAdmit(PeerId peer)
    {
        var now = _options.Time.GetTimestamp();
        var window = (long)(_options.RateWindow.TotalSeconds * _options.Time.TimestampFrequency);
        lock (_rateLock)
        {
            while (_recent.TryPeek(out var t) && now - t >= window) _recent.Dequeue();
            foreach (var (key, times) in _recentByPeer.ToList())
            {
                while (times.TryPeek(out var t) && now - t >= window) times.Dequeue();
                if (times.Count == 0) _recentByPeer.Remove(key);
            }
            var mine = _recentByPeer.GetValueOrDefault(peer);
            if (_recent.Count >= _options.GlobalRequestsPerWindow || mine?.Count >= _options.PeerRequestsPerWindow)
                return false;
            _recent.Enqueue(now);
            if (mine is null) _recentByPeer[peer] = mine = new Queue<long>();
            mine.Enqueue(now);
            return true;
        }
    }
}
