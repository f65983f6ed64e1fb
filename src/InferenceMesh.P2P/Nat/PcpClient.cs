using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace InferenceMesh.P2P.Nat;

/// <summary>
/// PCP (RFC 6887) client for the <c>MAP</c> opcode over TCP: one request carries a 12-byte random nonce that renewals and the delete
/// reuse. Replies are checked for version 2, the response bit, opcode, length (at most 1,100 bytes, a multiple of 4),
/// result code, nonce, protocol and internal port; a reply for another nonce is ignored as the RFC requires. Thread-safe.
/// </summary>
public sealed class PcpClient(PortMappingClientOptions options) : IPortMappingClient
{
    private const int MaxReply = 1100;
    private const int HeaderLength = 24;
    private const int MapLength = 36;
    private const byte OpcodeMap = 1;
    private const byte Tcp = 6;

    /// <inheritdoc/>
    public PortMappingProtocol Protocol => PortMappingProtocol.Pcp;

    /// <inheritdoc/>
    public Task<PortMapping> MapAsync(int internalPort, int suggestedExternalPort, TimeSpan lifetime, CancellationToken cancellationToken) =>
        RequestAsync(options.RequireGateway(), RandomNumberGenerator.GetBytes(12), internalPort, suggestedExternalPort, lifetime, cancellationToken);

    /// <inheritdoc/>
    /// <remarks>The renewal carries the mapping's nonce, as RFC 6887 §11.2.1 asks.</remarks>
    public Task<PortMapping> RenewAsync(PortMapping mapping, TimeSpan lifetime, CancellationToken cancellationToken) =>
        RequestAsync(mapping.Gateway, mapping.Nonce.ToArray(), mapping.InternalPort, mapping.ExternalPort, lifetime, cancellationToken);

    /// <inheritdoc/>
    public Task UnmapAsync(PortMapping mapping, CancellationToken cancellationToken) =>
        RequestAsync(mapping.Gateway, mapping.Nonce.ToArray(), mapping.InternalPort, 0, TimeSpan.Zero, cancellationToken);

    private async Task<PortMapping> RequestAsync(IPAddress gateway, byte[] nonce, int internalPort, int suggestedExternalPort, TimeSpan lifetime, CancellationToken cancellationToken)
    {
        var client = NatNetwork.LocalAddressTowards(gateway);
        var seconds = (uint)Math.Clamp(lifetime.TotalSeconds, 0, uint.MaxValue);
        var request = EncodeMap(client, nonce, internalPort, suggestedExternalPort, seconds);
        var reply = await NatNetwork.ExchangeAsync(new IPEndPoint(gateway, options.GatewayPort), request, r => ParseMapReply(r.Span, nonce, internalPort),
            MaxReply, options.InitialTimeout, options.Attempts, options.Time, "PCP map", cancellationToken).ConfigureAwait(false);
        var (granted, port, external) = reply.Value;
        if (seconds != 0 && granted == 0)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "PCP: the gateway granted a mapping with lifetime 0");
        return new PortMapping
        {
            Protocol = PortMappingProtocol.Pcp, Gateway = gateway, InternalAddress = client, InternalPort = internalPort,
            ExternalAddress = external, ExternalPort = port, Lifetime = TimeSpan.FromSeconds(granted), Nonce = nonce,
        };
    }

    /// <summary>A MAP request (RFC 6887 §7.1 header, §11.1 opcode): version 2, lifetime, client address, nonce, TCP, ports, any external address.</summary>
    internal static byte[] EncodeMap(IPAddress client, ReadOnlySpan<byte> nonce, int internalPort, int suggestedExternalPort, uint lifetime)
    {
        var request = new byte[HeaderLength + MapLength];
        request[0] = 2;
        request[1] = OpcodeMap;
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(4), lifetime);
        client.MapToIPv6().TryWriteBytes(request.AsSpan(8, 16), out _);
        nonce.CopyTo(request.AsSpan(HeaderLength));
        request[HeaderLength + 12] = Tcp;
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(HeaderLength + 16), checked((ushort)internalPort));
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(HeaderLength + 18), checked((ushort)suggestedExternalPort));
        IPAddress.Any.MapToIPv6().TryWriteBytes(request.AsSpan(HeaderLength + 20, 16), out _);
        return request;
    }

    /// <summary>Parses a MAP response; null when it answers another nonce (RFC 6887 §11.3: ignore it).</summary>
    internal static StrongBox<(uint Lifetime, int Port, IPAddress External)>? ParseMapReply(ReadOnlySpan<byte> reply, ReadOnlySpan<byte> nonce, int internalPort)
    {
        if (reply.Length < 4)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: reply of {reply.Length} bytes is shorter than a header");
        if (reply[0] == 0 && reply.Length >= 4 && BinaryPrimitives.ReadUInt16BigEndian(reply[2..]) == 1)
            throw new PortMappingException(PortMappingErrorCode.UnsupportedVersion, "PCP: the gateway speaks only NAT-PMP (version 0, result 1)", 1);
        if (reply[0] != 2)
            throw new PortMappingException(PortMappingErrorCode.UnsupportedVersion, $"PCP: reply has version {reply[0]}, not 2");
        if (reply[1] != (0x80 | OpcodeMap))
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: reply has R/opcode byte 0x{reply[1]:x2}, expected 0x81");
        if (reply.Length < HeaderLength || reply.Length % 4 != 0)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: reply of {reply.Length} bytes (at least {HeaderLength}, a multiple of 4)");
        var result = reply[3];
        if (result != 0)
            throw new PortMappingException(result == 1 ? PortMappingErrorCode.UnsupportedVersion : PortMappingErrorCode.Refused,
                $"PCP: the gateway refused with result {result} ({ResultName(result)})", result);
        if (reply.Length < HeaderLength + MapLength)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: MAP reply of {reply.Length} bytes lacks its {MapLength}-byte opcode data");
        var map = reply[HeaderLength..];
        if (!map[..12].SequenceEqual(nonce))
            return null;
        if (map[12] != Tcp || BinaryPrimitives.ReadUInt16BigEndian(map[16..]) != internalPort)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: reply maps protocol {map[12]} port {BinaryPrimitives.ReadUInt16BigEndian(map[16..])}, not TCP {internalPort}");
        var lifetime = BinaryPrimitives.ReadUInt32BigEndian(reply[4..]);
        var port = BinaryPrimitives.ReadUInt16BigEndian(map[18..]);
        var external = new IPAddress(map.Slice(20, 16));
        if (!external.IsIPv4MappedToIPv6)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: assigned external address {external} is not an IPv4 address");
        external = external.MapToIPv4();
        if (lifetime != 0 && (port == 0 || external.Equals(IPAddress.Any)))
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"PCP: assigned external endpoint {external}:{port} is not one");
        return new((lifetime, port, external));
    }

    private static string ResultName(int result) => result switch
    {
        1 => "UNSUPP_VERSION",
        2 => "NOT_AUTHORIZED",
        3 => "MALFORMED_REQUEST",
        4 => "UNSUPP_OPCODE",
        5 => "UNSUPP_OPTION",
        6 => "MALFORMED_OPTION",
        7 => "NETWORK_FAILURE",
        8 => "NO_RESOURCES",
        9 => "UNSUPP_PROTOCOL",
        10 => "USER_EX_QUOTA",
        11 => "CANNOT_PROVIDE_EXTERNAL",
        12 => "ADDRESS_MISMATCH",
        13 => "EXCESSIVE_REMOTE_PEERS",
        _ => "unknown result code",
    };
}
