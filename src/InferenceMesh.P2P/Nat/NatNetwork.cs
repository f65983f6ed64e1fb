using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;

namespace InferenceMesh.P2P.Nat;

/// <summary>Finding the default gateway and this host's address towards it, and one UDP request/reply exchange with retries.</summary>
internal static class NatNetwork
{
    /// <summary>The first IPv4 default gateway of an up interface, or null when there is none.</summary>
    public static IPAddress? DefaultGateway() =>
        NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().GatewayAddresses)
            .Select(g => g.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !a.Equals(IPAddress.Any));

    /// <summary>This host's address on the route to <paramref name="remote"/> (a connected UDP socket sends nothing).</summary>
    public static IPAddress LocalAddressTowards(IPAddress remote)
    {
        using var probe = new Socket(remote.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        probe.Connect(new IPEndPoint(remote, 9));
        return ((IPEndPoint)probe.LocalEndPoint!).Address;
    }

    /// <summary>
    /// Sends <paramref name="request"/> to <paramref name="server"/> and returns the first reply that <paramref name="parse"/> accepts
    /// (non-null), resending after <paramref name="initialTimeout"/>, then twice as long each time (RFC 6886 §3.1), <paramref name="attempts"/> times.
    /// A datagram over <paramref name="maxReply"/> bytes is refused unread; <paramref name="parse"/> throws a <see cref="PortMappingException"/>
    /// for a malformed reply and returns null for one that answers another request. Safe to cancel.
    /// </summary>
    public static async Task<T> ExchangeAsync<T>(IPEndPoint server, ReadOnlyMemory<byte> request, Func<ReadOnlyMemory<byte>, T?> parse, int maxReply,
        TimeSpan initialTimeout, int attempts, TimeProvider time, string what, CancellationToken cancellationToken) where T : class
    {
        using var socket = new Socket(server.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        socket.Connect(server);
        var buffer = new byte[maxReply + 1];
        var timeout = initialTimeout;
        for (var attempt = 0; attempt < attempts; attempt++, timeout *= 2)
        {
            try
            {
                await socket.SendAsync(request, SocketFlags.None, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new PortMappingException(PortMappingErrorCode.NoGateway, $"{what}: cannot send to {server}: {e.SocketErrorCode}", inner: e);
            }
            using var timer = new CancellationTokenSource(timeout, time);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
            try
            {
                while (true)
                {
                    int n;
                    try
                    {
                        n = await socket.ReceiveAsync(buffer, SocketFlags.None, wait.Token).ConfigureAwait(false);
                    }
                    catch (SocketException e) when (e.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset)
                    {
                        throw new PortMappingException(PortMappingErrorCode.NoGateway, $"{what}: {server} refused the request (nothing listens on that port)", inner: e);
                    }
                    if (n > maxReply)
                        throw new PortMappingException(PortMappingErrorCode.ReplyTooLarge, $"{what}: reply from {server} exceeds {maxReply} bytes");
                    if (parse(buffer.AsMemory(0, n)) is { } reply)
                        return reply;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }
        throw new PortMappingException(PortMappingErrorCode.Timeout, $"{what}: no reply from {server} after {attempts} attempts");
    }
}
