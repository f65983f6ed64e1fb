using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.P2P.Hosting;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Runs a <see cref="KadDht"/> over a <see cref="Libp2pHost"/>: each request opens a Yamux stream on the DHT
/// protocol id (<c>/inferencemesh/kad/1.0.0</c> or <c>/ipfs/kad/1.0.0</c>), writes one unsigned-varint
/// length-prefixed message, reads one back and closes the stream. Inbound streams are served message after
/// message until the remote closes (go-libp2p reuses streams; js-libp2p resets after its answer). A frame over
/// the size limit or malformed resets that stream and is counted; the connection lives on. Thread-safe.
/// </summary>
public sealed class Libp2pKadNetwork : IKadNetwork
{
    private readonly Libp2pHost _host;
    private readonly string _protocol;
    private readonly KadMessageLimits _limits;
    private KadDht? _dht;

    /// <summary>An adapter for <paramref name="host"/> speaking <paramref name="protocolId"/>; call <see cref="Attach"/> once the DHT exists.</summary>
    public Libp2pKadNetwork(Libp2pHost host, string protocolId = KadDhtOptions.MeshProtocolId, KadMessageLimits? limits = null)
    {
        _host = host;
        _protocol = protocolId;
        _limits = limits ?? KadMessageLimits.Default;
    }

    /// <summary>
    /// Binds the DHT: in server mode registers the protocol handler (Identify-push then tells connected peers),
    /// and sets the DHT's announced addresses to the host's listen addresses.
    /// </summary>
    public void Attach(KadDht dht)
    {
        _dht = dht;
        dht.LocalAddresses = _host.ListenAddresses;
        if (dht.Options.Mode == DhtMode.Server)
            _host.SetHandler(_protocol, ServeAsync);
    }

    /// <inheritdoc />
    public async Task<KadMessage> SendRequestAsync(KadPeer peer, KadMessage request, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            var stream = await OpenAsync(peer, cts.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                KadFraming.Write(stream.Output, request);
                await stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
                await stream.Output.CompleteAsync().ConfigureAwait(false);
                return await ReadMessageAsync(stream.Input, _limits, cts.Token).ConfigureAwait(false)
                    ?? throw new DhtException(DhtErrorCode.Unreachable, $"{peer.Id} closed the stream without answering");
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new DhtException(DhtErrorCode.Unreachable, $"{peer.Id} did not answer within {timeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is P2PException or IOException or InvalidOperationException)
        {
            throw new DhtException(DhtErrorCode.Unreachable, $"{peer.Id}: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public async Task SendMessageAsync(KadPeer peer, KadMessage message, TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            var stream = await OpenAsync(peer, cts.Token).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                KadFraming.Write(stream.Output, message);
                await stream.Output.FlushAsync(cts.Token).ConfigureAwait(false);
                await stream.Output.CompleteAsync().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new DhtException(DhtErrorCode.Unreachable, $"{peer.Id} could not be reached within {timeout.TotalSeconds:0.#} s");
        }
        catch (Exception e) when (e is P2PException or IOException or InvalidOperationException)
        {
            throw new DhtException(DhtErrorCode.Unreachable, $"{peer.Id}: {e.Message}", e);
        }
    }

    private Task<Libp2pStream> OpenAsync(KadPeer peer, CancellationToken ct) =>
        _host.NewStreamAsync(peer.Id, peer.Addresses, [_protocol], ct);

    private async Task ServeAsync(Libp2pStream stream, CancellationToken ct)
    {
        var dht = _dht ?? throw new InvalidOperationException("no DHT attached");
        var conn = stream.Connection;
        while (true)
        {
            KadMessage? request;
            try
            {
                request = await ReadMessageAsync(stream.Input, _limits, ct).ConfigureAwait(false);
            }
            catch (DhtException e)
            {
                dht.ReportRejectedFrame(e);
                stream.Reset();
                return;
            }
            if (request is null)
                break;
            var info = conn.RemoteInfo;
            IReadOnlyList<Multiaddr> addrs = info is { ListenAddresses.Count: > 0 } ? info.ListenAddresses : [conn.RemoteAddress];
            var isServer = info?.Protocols.Contains(_protocol) ?? false;
            KadMessage? response;
            try
            {
                response = dht.HandleRequest(new KadPeer(conn.RemotePeer, addrs), isServer, request);
            }
            catch (DhtException)
            {
                stream.Reset();
                return;
            }
            if (response is not null)
            {
                KadFraming.Write(stream.Output, response);
                await stream.Output.FlushAsync(ct).ConfigureAwait(false);
            }
        }
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>
    /// Reads one length-prefixed message; null on a clean end of stream before any byte. Throws
    /// <see cref="DhtException"/> (LimitExceeded before buffering an oversized frame, InvalidMessage when
    /// malformed or truncated). Safe to cancel.
    /// </summary>
    public static async Task<KadMessage?> ReadMessageAsync(PipeReader input, KadMessageLimits limits, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (KadFraming.TryReadFrame(ref buffer, limits.MaxMessageSize, out var payload))
                {
                    consumed = buffer.Start;
                    examined = consumed;
                    return payload.IsSingleSegment
                        ? KadMessage.Decode(payload.FirstSpan, limits)
                        : KadMessage.Decode(payload.ToArray(), limits);
                }
                if (result.IsCompleted)
                {
                    if (buffer.IsEmpty) return null;
                    throw new DhtException(DhtErrorCode.InvalidMessage, "stream ended inside a DHT message");
                }
                if (result.IsCanceled)
                    throw new OperationCanceledException(cancellationToken);
            }
            finally
            {
                input.AdvanceTo(consumed, examined);
            }
        }
    }
}
