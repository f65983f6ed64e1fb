using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Protocols;

namespace InferenceMesh.P2P.Relay;

/// <summary>
/// The relay side of Circuit Relay v2 (<c>/libp2p/circuit/relay/0.2.0/hop</c>): grants reservations with a signed
/// voucher, and splices a circuit between a source and a reserved target over a stop stream, within
/// <see cref="RelayServiceOptions"/>' caps and per-circuit limits. Reservations are refused over relayed connections.
/// Thread-safe. Attach one to a publicly reachable host with <see cref="Attach"/>.
/// </summary>
public sealed class RelayService
{
    private readonly Libp2pHost _host;
    private readonly object _gate = new();
    private readonly Dictionary<PeerId, Slot> _reservations = [];
    private readonly Dictionary<PeerId, int> _circuitsPerPeer = [];
    private int _circuits;
    private long _bytesRelayed;

    private RelayService(Libp2pHost host, RelayServiceOptions options)
    {
        _host = host;
        Options = options;
    }

    /// <summary>Makes <paramref name="host"/> a relay: registers the hop handler and returns the service.</summary>
    public static RelayService Attach(Libp2pHost host, RelayServiceOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        var service = new RelayService(host, options ?? new RelayServiceOptions());
        host.SetHandler(CircuitRelayClient.HopProtocolId, service.ServeHopAsync);
        return service;
    }

    /// <summary>The limits in force.</summary>
    public RelayServiceOptions Options { get; }

    /// <summary>Reservations not yet expired.</summary>
    public int ReservationCount
    {
        get { lock (_gate) { Expire(); return _reservations.Count; } }
    }

    /// <summary>Circuits open now.</summary>
    public int CircuitCount => Volatile.Read(ref _circuits);

    /// <summary>Bytes relayed over all circuits so far, both directions (counted as they pass).</summary>
    public long BytesRelayed => Interlocked.Read(ref _bytesRelayed);

    /// <summary>Raised (on a pool thread) when a circuit ends: source, target, why, and bytes relayed both ways.</summary>
    public event Action<PeerId, PeerId, CircuitCloseReason, long>? CircuitClosed;

    private TimeProvider Time => _host.Options.Time;

    private async Task ServeHopAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        CircuitMessage request;
        using (var timeout = new Deadline(Options.RequestTimeout, Time, cancellationToken))
        {
            byte[]? bytes;
            try
            {
                bytes = await LengthPrefixed.ReadAsync(stream.Input, CircuitMessage.MaxLength, timeout.Token).ConfigureAwait(false);
            }
            catch (P2PException e) when (e.P2PCode is P2PErrorCode.LimitExceeded or P2PErrorCode.InvalidEncoding)
            {
                await ReplyAsync(stream, RelayStatus.MalformedMessage, cancellationToken).ConfigureAwait(false);
                return;
            }
            if (bytes is null)
                return;
            try
            {
                request = CircuitMessage.Decode(bytes, hop: true);
            }
            catch (P2PException)
            {
                await ReplyAsync(stream, RelayStatus.MalformedMessage, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
        switch (request.Type)
        {
            case CircuitMessageType.Reserve:
                await ReserveAsync(stream, cancellationToken).ConfigureAwait(false);
                break;
            case CircuitMessageType.Connect:
                await ConnectAsync(stream, request, cancellationToken).ConfigureAwait(false);
                break;
            default:
                await ReplyAsync(stream, RelayStatus.UnexpectedMessage, cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    private static async Task ReplyAsync(Libp2pStream stream, RelayStatus status, CancellationToken cancellationToken, RelayLimit? limit = null)
    {
        LengthPrefixed.Write(stream.Output, (CircuitMessage.StatusOnly(status) with { Limit = limit }).Encode(hop: true));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (status != RelayStatus.Ok)
            await stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    private RelayLimit? Limit => Options.CircuitDuration is null && Options.CircuitBytes is null ? null : new RelayLimit(Options.CircuitDuration, Options.CircuitBytes);

    private async Task ReserveAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var conn = stream.Connection;
        var peer = conn.RemotePeer;
        if (conn.IsRelayed)
        {
            await ReplyAsync(stream, RelayStatus.PermissionDenied, cancellationToken).ConfigureAwait(false);
            return;
        }
        var ip = conn.RemoteAddress.TryGetTcpEndPoint()?.Address ?? IPAddress.None;
        var expires = Time.GetUtcNow() + Options.ReservationTtl;
        bool refused;
        lock (_gate)
        {
            Expire();
            refused = !_reservations.ContainsKey(peer)
                && (_reservations.Count >= Options.MaxReservations || _reservations.Values.Count(s => s.Ip.Equals(ip)) >= Options.MaxReservationsPerIp);
            if (!refused)
                _reservations[peer] = new Slot(expires, ip, conn);
        }
        if (refused)
        {
            await ReplyAsync(stream, RelayStatus.ReservationRefused, cancellationToken).ConfigureAwait(false);
            return;
        }
        conn.KeepAlive = true;
        var expireSeconds = (ulong)expires.ToUnixTimeSeconds();
        var addresses = (Options.AnnounceAddresses ?? _host.ListenAddresses)
            .Where(a => !a.Components.Any(c => c.Protocol == MultiaddrProtocol.P2pCircuit))
            .Select(a => a.WithPeerId(_host.PeerId)).ToList();
        var reply = new CircuitMessage(CircuitMessageType.Status)
        {
            Status = RelayStatus.Ok, HasReservation = true, ReservationExpire = expireSeconds, ReservationAddresses = addresses,
            Voucher = new RelayVoucher(_host.PeerId, peer, expireSeconds).Seal(_host.Options.Identity), Limit = Limit,
        };
        LengthPrefixed.Write(stream.Output, reply.Encode(hop: true));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Drops expired reservations and those whose connection closed. Call under <see cref="_gate"/>.</summary>
    private void Expire()
    {
        var now = Time.GetUtcNow();
        foreach (var (peer, slot) in _reservations.ToList())
        {
            if (slot.Expires <= now || slot.Connection.IsClosed)
                _reservations.Remove(peer);
        }
    }

    private async Task ConnectAsync(Libp2pStream source, CircuitMessage request, CancellationToken cancellationToken)
    {
        var from = source.Connection.RemotePeer;
        var to = request.Peer;
        if (to is null)
        {
            await ReplyAsync(source, RelayStatus.MalformedMessage, cancellationToken).ConfigureAwait(false);
            return;
        }
        Libp2pConnection? target;
        lock (_gate)
        {
            Expire();
            target = _reservations.TryGetValue(to, out var slot) ? slot.Connection : null;
        }
        if (target is null)
        {
            await ReplyAsync(source, RelayStatus.NoReservation, cancellationToken).ConfigureAwait(false);
            return;
        }
        if (!TryOpenCircuit(from, to))
        {
            await ReplyAsync(source, RelayStatus.ResourceLimitExceeded, cancellationToken).ConfigureAwait(false);
            return;
        }
        var reason = CircuitCloseReason.Closed;
        long bytes = 0;
        Libp2pStream? stop = null;
        try
        {
            var limit = Limit;
            try
            {
                using var timeout = new Deadline(Options.RequestTimeout, Time, cancellationToken);
                stop = await target.OpenStreamAsync(CircuitRelayClient.StopProtocolId, timeout.Token).ConfigureAwait(false);
                var connect = new CircuitMessage(CircuitMessageType.Connect) { Peer = from, Limit = limit };
                LengthPrefixed.Write(stop.Output, connect.Encode(hop: false));
                await stop.Output.FlushAsync(timeout.Token).ConfigureAwait(false);
                var answer = await LengthPrefixed.ReadAsync(stop.Input, CircuitMessage.MaxLength, timeout.Token).ConfigureAwait(false)
                    ?? throw new P2PException(P2PErrorCode.ConnectionClosed, "the target closed the stop stream");
                var status = CircuitMessage.Decode(answer, hop: false);
                if (status.Type != CircuitMessageType.Status || status.Status != RelayStatus.Ok)
                    throw new RelayException(status.Status, $"{to} answered the stop request with {status.Type} {status.Status}");
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                _host.Options.Log?.Invoke($"relay: circuit {from} -> {to} not set up: {e.Message}");
                stop?.Reset();
                await ReplyAsync(source, RelayStatus.ConnectionFailed, cancellationToken).ConfigureAwait(false);
                return;
            }
            await ReplyAsync(source, RelayStatus.Ok, cancellationToken, limit).ConfigureAwait(false);
            (reason, bytes) = await SpliceAsync(source, stop, limit, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (stop is not null)
                await stop.DisposeAsync().ConfigureAwait(false);
            CloseCircuit(from, to);
        }
        _host.Options.Log?.Invoke($"relay: circuit {from} -> {to} ended ({reason}, {bytes} bytes)");
        CircuitClosed?.Invoke(from, to, reason, bytes);
    }

    private bool TryOpenCircuit(PeerId from, PeerId to)
    {
        lock (_gate)
        {
            if (_circuits >= Options.MaxCircuits
                || _circuitsPerPeer.GetValueOrDefault(from) >= Options.MaxCircuitsPerPeer
                || _circuitsPerPeer.GetValueOrDefault(to) >= Options.MaxCircuitsPerPeer)
                return false;
            _circuits++;
            _circuitsPerPeer[from] = _circuitsPerPeer.GetValueOrDefault(from) + 1;
            _circuitsPerPeer[to] = _circuitsPerPeer.GetValueOrDefault(to) + 1;
            return true;
        }
    }

    private void CloseCircuit(PeerId from, PeerId to)
    {
        lock (_gate)
        {
            _circuits--;
            foreach (var p in new[] { from, to })
            {
                if (--_circuitsPerPeer[p] == 0)
                    _circuitsPerPeer.Remove(p);
            }
        }
    }

    /// <summary>Copies both ways until both ends close, a limit is hit, or the relay stops; resets both streams unless they closed cleanly.</summary>
    private async Task<(CircuitCloseReason, long)> SpliceAsync(Libp2pStream a, Libp2pStream b, RelayLimit? limit, CancellationToken cancellationToken)
    {
        using var timer = limit?.Duration is { } d ? new CancellationTokenSource(d, Time) : new CancellationTokenSource();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        var dataLimit = (long)Math.Min(limit?.Data ?? long.MaxValue, long.MaxValue);
        var overLimit = 0;
        long bytes = 0;
        async Task<bool> CopyAsync(PipeReader from, PipeWriter to)
        {
            long copied = 0;
            try
            {
                while (true)
                {
                    var result = await from.ReadAsync(stop.Token).ConfigureAwait(false);
                    var buffer = result.Buffer;
                    if (copied + buffer.Length > dataLimit)
                    {
                        Interlocked.Exchange(ref overLimit, 1);
                        await stop.CancelAsync().ConfigureAwait(false);
                        return false;
                    }
                    foreach (var segment in buffer)
                        to.Write(segment.Span);
                    copied += buffer.Length;
                    Interlocked.Add(ref bytes, buffer.Length);
                    Interlocked.Add(ref _bytesRelayed, buffer.Length);
                    from.AdvanceTo(buffer.End);
                    var flush = await to.FlushAsync(stop.Token).ConfigureAwait(false);
                    if (result.IsCompleted)
                    {
                        await to.CompleteAsync().ConfigureAwait(false);
                        return true;
                    }
                    if (flush.IsCompleted)
                        return false;
                }
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException or InvalidOperationException or IOException)
            {
                await stop.CancelAsync().ConfigureAwait(false);
                return false;
            }
        }
        var clean = await Task.WhenAll(Task.Run(() => CopyAsync(a.Input, b.Output)), Task.Run(() => CopyAsync(b.Input, a.Output))).ConfigureAwait(false);
        var reason = overLimit != 0 ? CircuitCloseReason.DataLimit
            : timer.IsCancellationRequested ? CircuitCloseReason.DurationLimit
            : cancellationToken.IsCancellationRequested ? CircuitCloseReason.RelayStopping
            : CircuitCloseReason.Closed;
        if (!clean.All(c => c))
        {
            a.Reset();
            b.Reset();
        }
        return (reason, Interlocked.Read(ref bytes));
    }

    private sealed record Slot(DateTimeOffset Expires, IPAddress Ip, Libp2pConnection Connection);
}
