using System.Collections.Concurrent;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Relay;

/// <summary>
/// The client side of Circuit Relay v2, one per <see cref="Libp2pHost"/> (<see cref="Libp2pHost.Relay"/>): reserves
/// slots on relays and keeps them renewed, dials <c>…/p2p/&lt;relay&gt;/p2p-circuit/p2p/&lt;peer&gt;</c> addresses (the
/// host does this for any such address), and accepts circuits on <c>/libp2p/circuit/relay/0.2.0/stop</c>, which the
/// host upgrades with Noise and Yamux like a TCP connection (<see cref="Libp2pConnection.IsRelayed"/> is true). Thread-safe.
/// </summary>
public sealed class CircuitRelayClient : IAsyncDisposable
{
    /// <summary>The hop protocol (client to relay).</summary>
    public const string HopProtocolId = "/libp2p/circuit/relay/0.2.0/hop";

    /// <summary>The stop protocol (relay to target).</summary>
    public const string StopProtocolId = "/libp2p/circuit/relay/0.2.0/stop";

    /// <summary>Time for a relay (or a peer through it) to answer a request.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(10);

    private readonly Libp2pHost _host;
    private readonly ConcurrentDictionary<PeerId, RelayReservation> _reservations = new();
    private readonly ConcurrentDictionary<PeerId, Task> _renewals = new();
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;

    internal CircuitRelayClient(Libp2pHost host)
    {
        _host = host;
        host.SetHandler(StopProtocolId, ServeStopAsync);
    }

    /// <summary>Reservations held now (renewed in the background until this host stops or the relay refuses).</summary>
    public IReadOnlyList<RelayReservation> Reservations => [.. _reservations.Values];

    /// <summary>This node's <c>/p2p-circuit</c> addresses through every relay it holds a reservation on.</summary>
    public IReadOnlyList<Multiaddr> CircuitAddresses => [.. _reservations.Values.SelectMany(r => r.CircuitAddresses).Distinct()];

    /// <summary>Raised (on a pool thread) when a reservation is made, renewed or lost; read <see cref="Reservations"/>.</summary>
    public event Action? ReservationsChanged;

    /// <summary>
    /// Reserves a slot on the relay at <paramref name="relayAddress"/> (which must name its <c>/p2p/</c> PeerId) and renews
    /// it before it expires until the host stops. Throws <see cref="RelayException"/> when the relay refuses, and
    /// <see cref="P2PException"/> (ProtocolViolation, InvalidEncoding, HandshakeFailed for a forged voucher, Timeout) when
    /// its answer is not a valid reservation. Safe to cancel.
    /// </summary>
    public async Task<RelayReservation> ReserveAsync(Multiaddr relayAddress, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(relayAddress);
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var relay = relayAddress.PeerId
            ?? throw new P2PException(P2PErrorCode.InvalidEncoding, $"relay address {relayAddress} has no /p2p/ PeerId");
        var reservation = await RequestReservationAsync(relayAddress, relay, cancellationToken).ConfigureAwait(false);
        _reservations[relay] = reservation;
        ReservationsChanged?.Invoke();
        if (!_stopping.IsCancellationRequested)
            _ = _renewals.GetOrAdd(relay, _ => Task.Run(() => RenewAsync(relayAddress, relay)));
        return reservation;
    }

    private async Task<RelayReservation> RequestReservationAsync(Multiaddr relayAddress, PeerId relay, CancellationToken cancellationToken)
    {
        using var timeout = new Deadline(RequestTimeout, _host.Options.Time, cancellationToken, _stopping.Token);
        try
        {
            var conn = await _host.DialAsync(relayAddress, timeout.Token).ConfigureAwait(false);
            if (conn.IsRelayed)
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"cannot reserve on {relay} over a relayed connection");
            await using var stream = await conn.OpenStreamAsync(HopProtocolId, timeout.Token).ConfigureAwait(false);
            LengthPrefixed.Write(stream.Output, new CircuitMessage(CircuitMessageType.Reserve).Encode(hop: true));
            await stream.Output.FlushAsync(timeout.Token).ConfigureAwait(false);
            var answer = await ReadAnswerAsync(stream, relay, "RESERVE", timeout.Token).ConfigureAwait(false);
            if (!answer.HasReservation || answer.ReservationExpire is not { } expire)
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"relay {relay} accepted the reservation but sent none");
            var expires = DateTimeOffset.FromUnixTimeSeconds((long)Math.Min(expire, (ulong)DateTimeOffset.MaxValue.ToUnixTimeSeconds()));
            if (expires <= _host.Options.Time.GetUtcNow())
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"relay {relay} granted a reservation that expired at {expires:O}");
            RelayVoucher? voucher = null;
            if (answer.Voucher is not null)
            {
                voucher = RelayVoucher.Open(answer.Voucher);
                if (voucher.Relay != relay || voucher.Peer != _host.PeerId || voucher.Expiration != expire)
                    throw new P2PException(P2PErrorCode.ProtocolViolation, $"relay {relay} sent a voucher for relay {voucher.Relay}, peer {voucher.Peer}, expiring {voucher.Expiration} instead of {expire}");
            }
            var relayAddresses = answer.ReservationAddresses
                .Where(a => a.PeerId is null || a.PeerId == relay)
                .Where(a => !IsCircuit(a))
                .Select(a => a.WithPeerId(relay))
                .DefaultIfEmpty(conn.RemoteAddress.WithPeerId(relay));
            var circuits = relayAddresses.Select(a => Multiaddr.Parse($"{a}/p2p-circuit/p2p/{_host.PeerId}")).Distinct().ToList();
            conn.KeepAlive = true;
            return new RelayReservation(relay, expires, circuits, voucher, answer.Limit);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested && !_stopping.IsCancellationRequested)
        {
            throw new P2PException(P2PErrorCode.Timeout, $"reservation on {relay} timed out", e);
        }
    }

    private static async Task<CircuitMessage> ReadAnswerAsync(Libp2pStream stream, PeerId relay, string request, CancellationToken cancellationToken)
    {
        var bytes = await LengthPrefixed.ReadAsync(stream.Input, CircuitMessage.MaxLength, cancellationToken).ConfigureAwait(false)
            ?? throw new P2PException(P2PErrorCode.ConnectionClosed, $"relay {relay} closed the hop stream without answering {request}");
        var answer = CircuitMessage.Decode(bytes, hop: true);
        if (answer.Type != CircuitMessageType.Status)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"relay {relay} answered {request} with a {answer.Type} message");
        if (answer.Status != RelayStatus.Ok)
            throw new RelayException(answer.Status, $"relay {relay} refused {request}: {answer.Status}");
        return answer;
    }

    private async Task RenewAsync(Multiaddr relayAddress, PeerId relay)
    {
        var time = _host.Options.Time;
        try
        {
            while (_reservations.TryGetValue(relay, out var current))
            {
                var left = current.Expires - time.GetUtcNow();
                await Task.Delay(TimeSpan.FromTicks(Math.Max(TimeSpan.FromSeconds(1).Ticks, left.Ticks / 2)), time, _stopping.Token).ConfigureAwait(false);
                try
                {
                    _reservations[relay] = await RequestReservationAsync(relayAddress, relay, _stopping.Token).ConfigureAwait(false);
                }
                catch (P2PException e)
                {
                    _host.Options.Log?.Invoke($"relay: renewing the reservation on {relay} failed: {e.P2PCode}: {e.Message}");
                    if (e is RelayException || current.Expires <= time.GetUtcNow())
                        _reservations.TryRemove(relay, out _);
                }
                ReservationsChanged?.Invoke();
            }
        }
        catch (OperationCanceledException)
        {
            // the host is stopping
        }
        finally
        {
            _renewals.TryRemove(relay, out _);
        }
    }

    /// <summary>Opens a circuit to the peer named after <c>/p2p-circuit</c> through the relay named before it; the host upgrades it. Safe to cancel.</summary>
    internal async Task<ITransportConnection> DialCircuitAsync(Multiaddr address, CancellationToken cancellationToken)
    {
        var (relayAddress, target) = Split(address);
        var relay = relayAddress.PeerId!;
        if (relay == _host.PeerId || target == _host.PeerId)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"{address} relays through or to this host itself");
        var conn = await _host.DialAsync(relayAddress, cancellationToken).ConfigureAwait(false);
        if (conn.IsRelayed)
            throw new P2PException(P2PErrorCode.DialFailed, $"relay {relay} is itself reached only through a relay");
        var stream = await conn.OpenStreamAsync(HopProtocolId, cancellationToken).ConfigureAwait(false);
        try
        {
            LengthPrefixed.Write(stream.Output, new CircuitMessage(CircuitMessageType.Connect) { Peer = target }.Encode(hop: true));
            await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            var answer = await ReadAnswerAsync(stream, relay, $"CONNECT to {target}", cancellationToken).ConfigureAwait(false);
            var via = Multiaddr.Parse($"{conn.RemoteAddress.WithPeerId(relay)}/p2p-circuit");
            return new RelayedTransportConnection(stream, via, via, answer.Limit);
        }
        catch
        {
            stream.Reset();
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Splits <c>R/p2p/relay/p2p-circuit/p2p/target</c> into the relay's address and the target. Throws <see cref="P2PException"/> (InvalidEncoding).</summary>
    public static (Multiaddr Relay, PeerId Target) Split(Multiaddr address)
    {
        ArgumentNullException.ThrowIfNull(address);
        var text = address.ToString();
        var at = text.IndexOf("/p2p-circuit", StringComparison.Ordinal);
        if (at <= 0)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"{address} is not a relayed address (R/p2p/<relay>/p2p-circuit/p2p/<peer>)");
        var relay = Multiaddr.Parse(text[..at]);
        var rest = text[(at + "/p2p-circuit".Length)..];
        if (relay.PeerId is null || relay.Components[^1].Protocol != MultiaddrProtocol.P2p)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"{address} does not name the relay's /p2p/ PeerId before /p2p-circuit");
        if (rest.Length == 0 || !Multiaddr.TryParse(rest, out var tail) || tail!.Components.Count != 1 || tail.PeerId is not { } target)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"{address} does not end in /p2p-circuit/p2p/<peer>");
        return (relay, target);
    }

    /// <summary>Whether <paramref name="address"/> goes through a relay (has <c>/p2p-circuit</c>).</summary>
    public static bool IsCircuit(Multiaddr address) => address.Components.Any(c => c.Protocol == MultiaddrProtocol.P2pCircuit);

    private async Task ServeStopAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        CircuitMessage request;
        using (var timeout = new Deadline(RequestTimeout, _host.Options.Time, cancellationToken))
        {
            var bytes = await LengthPrefixed.ReadAsync(stream.Input, CircuitMessage.MaxLength, timeout.Token).ConfigureAwait(false);
            if (bytes is null)
                return;
            try
            {
                request = CircuitMessage.Decode(bytes, hop: false);
            }
            catch (P2PException e)
            {
                _host.Options.Log?.Invoke($"relay: malformed stop request from {stream.Connection.RemotePeer}: {e.Message}");
                await AnswerStopAsync(stream, RelayStatus.MalformedMessage, cancellationToken).ConfigureAwait(false);
                return;
            }
        }
        if (request.Type != CircuitMessageType.Connect || request.Peer is null)
        {
            await AnswerStopAsync(stream, request.Type != CircuitMessageType.Connect ? RelayStatus.UnexpectedMessage : RelayStatus.MalformedMessage, cancellationToken).ConfigureAwait(false);
            return;
        }
        await AnswerStopAsync(stream, RelayStatus.Ok, cancellationToken).ConfigureAwait(false);
        var via = Multiaddr.Parse($"{stream.Connection.RemoteAddress.WithPeerId(stream.Connection.RemotePeer)}/p2p-circuit");
        var raw = new RelayedTransportConnection(stream, via, via, request.Limit);
        var conn = await _host.UpgradeInboundAsync(raw, request.Peer, cancellationToken).ConfigureAwait(false);
        // The host disposes the stream when this handler returns: hold it for the life of the relayed connection.
        await conn.Completion.ContinueWith(_ => { }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private static async Task AnswerStopAsync(Libp2pStream stream, RelayStatus status, CancellationToken cancellationToken)
    {
        LengthPrefixed.Write(stream.Output, CircuitMessage.StatusOnly(status).Encode(hop: false));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Stops renewing reservations. Not safe to cancel.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_renewals.Values).ConfigureAwait(false);
        _stopping.Dispose();
    }
}
