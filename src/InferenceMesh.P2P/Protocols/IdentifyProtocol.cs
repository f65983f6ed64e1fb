using InferenceMesh.P2P.Hosting;

namespace InferenceMesh.P2P.Protocols;

/// <summary>
/// Identify (<c>/ipfs/id/1.0.0</c>) and Identify-push (<c>/ipfs/id/push/1.0.0</c>) for one host: answers
/// requests with the host's current <see cref="IdentifyInfo"/>, takes pushes, asks a peer and pushes to all.
/// </summary>
internal sealed class IdentifyProtocol(Libp2pHost host)
{
    /// <summary>What this host tells <paramref name="connection"/>'s remote about itself.</summary>
    public IdentifyInfo Describe(Libp2pConnection connection) => new()
    {
        ProtocolVersion = host.Options.ProtocolVersion,
        AgentVersion = host.Options.AgentVersion,
        PublicKey = host.Options.Identity.PublicKeyProtobuf,
        ListenAddresses = [.. host.ListenAddresses, .. host.ExternalAddresses],
        ObservedAddress = connection.RemoteAddress,
        Protocols = host.Protocols,
    };

    /// <summary>Handler of <see cref="IdentifyCodec.ProtocolId"/>: writes one message and closes. Safe to cancel.</summary>
    public async Task ServeAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        LengthPrefixed.Write(stream.Output, IdentifyCodec.Encode(Describe(stream.Connection)));
        await stream.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
        await stream.Output.CompleteAsync().ConfigureAwait(false);
    }

    /// <summary>Handler of <see cref="IdentifyCodec.PushProtocolId"/>: merges the pushed message into the connection's view. Safe to cancel.</summary>
    public async Task ServePushAsync(Libp2pStream stream, CancellationToken cancellationToken)
    {
        var msg = await LengthPrefixed.ReadAsync(stream.Input, host.Options.MaxIdentifyMessage, cancellationToken).ConfigureAwait(false);
        if (msg is null)
            return;
        stream.Connection.OnIdentifyPush(IdentifyCodec.Decode(msg), msg);
    }

    /// <summary>Asks <paramref name="connection"/>'s remote for its Identify. Safe to cancel.</summary>
    public static async Task<IdentifyInfo> RequestAsync(Libp2pConnection connection, int maxMessage, CancellationToken cancellationToken)
    {
        await using var s = await connection.OpenStreamAsync(IdentifyCodec.ProtocolId, cancellationToken).ConfigureAwait(false);
        var msg = await LengthPrefixed.ReadAsync(s.Input, maxMessage, cancellationToken).ConfigureAwait(false)
            ?? throw new P2PException(P2PErrorCode.ProtocolViolation, $"{connection.RemotePeer} closed Identify without a message");
        return IdentifyCodec.Decode(msg);
    }

    /// <summary>Sends Identify-push to every connected peer; failures are logged, not thrown. Safe to cancel.</summary>
    public async Task PushAsync(CancellationToken cancellationToken)
    {
        var tasks = host.Connections.Select(async c =>
        {
            try
            {
                await using var s = await c.OpenStreamAsync(IdentifyCodec.PushProtocolId, cancellationToken).ConfigureAwait(false);
                LengthPrefixed.Write(s.Output, IdentifyCodec.Encode(Describe(c)));
                await s.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is P2PException or OperationCanceledException or InvalidOperationException)
            {
                host.Options.Log?.Invoke($"identify-push to {c.RemotePeer} failed: {Libp2pConnection.Describe(e)}");
            }
        });
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }
}
