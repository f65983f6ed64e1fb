using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;

namespace InferenceMesh.P2P.Nat;

/// <summary>
/// NAT-PMP (RFC 6886) client: asks the gateway at <see cref="PortMappingClientOptions.Gateway"/> (UDP 5351) for its external
/// address and to map a TCP port. Replies are exactly the RFC's 12 and 16 bytes (longer ones are refused unread
/// beyond 1,100 bytes), checked for version 0, the answering opcode and the result code. Thread-safe.
/// </summary>
public sealed class NatPmpClient(PortMappingClientOptions options) : IPortMappingClient
{
    private const int MaxReply = 1100;

    /// <inheritdoc/>
    public PortMappingProtocol Protocol => PortMappingProtocol.NatPmp;

    /// <summary>Asks for the gateway's external IPv4 address (opcode 0). Safe to cancel.</summary>
    public async Task<IPAddress> GetExternalAddressAsync(CancellationToken cancellationToken)
    {
        var gateway = options.RequireGateway();
        var reply = await NatNetwork.ExchangeAsync(new IPEndPoint(gateway, options.GatewayPort), new byte[] { 0, 0 }, r => ParseExternalAddress(r.Span),
            MaxReply, options.InitialTimeout, options.Attempts, options.Time, "NAT-PMP external address", cancellationToken).ConfigureAwait(false);
        return reply;
    }

    /// <inheritdoc/>
    public async Task<PortMapping> MapAsync(int internalPort, int suggestedExternalPort, TimeSpan lifetime, CancellationToken cancellationToken)
    {
        var gateway = options.RequireGateway();
        var external = await GetExternalAddressAsync(cancellationToken).ConfigureAwait(false);
        var (port, granted) = await RequestAsync(gateway, internalPort, suggestedExternalPort, (uint)Math.Clamp(lifetime.TotalSeconds, 1, uint.MaxValue), cancellationToken).ConfigureAwait(false);
        if (granted == 0)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "NAT-PMP: the gateway granted a mapping with lifetime 0");
        return new PortMapping
        {
            Protocol = PortMappingProtocol.NatPmp, Gateway = gateway, InternalAddress = NatNetwork.LocalAddressTowards(gateway),
            InternalPort = internalPort, ExternalAddress = external, ExternalPort = port, Lifetime = TimeSpan.FromSeconds(granted),
        };
    }

    /// <inheritdoc/>
    public Task<PortMapping> RenewAsync(PortMapping mapping, TimeSpan lifetime, CancellationToken cancellationToken) =>
        MapAsync(mapping.InternalPort, mapping.ExternalPort, lifetime, cancellationToken);

    /// <inheritdoc/>
    public async Task UnmapAsync(PortMapping mapping, CancellationToken cancellationToken)
    {
        // RFC 6886 §3.4: a request with lifetime 0 and suggested external port 0 deletes the mapping of that internal port.
        await RequestAsync(mapping.Gateway, mapping.InternalPort, 0, 0, cancellationToken).ConfigureAwait(false);
    }

    private async Task<(int Port, uint Lifetime)> RequestAsync(IPAddress gateway, int internalPort, int suggestedExternalPort, uint lifetime, CancellationToken cancellationToken)
    {
        var request = new byte[12];
        request[1] = 2; // opcode 2: map TCP
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(4), checked((ushort)internalPort));
        BinaryPrimitives.WriteUInt16BigEndian(request.AsSpan(6), checked((ushort)suggestedExternalPort));
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(8), lifetime);
        var reply = await NatNetwork.ExchangeAsync(new IPEndPoint(gateway, options.GatewayPort), request, r => ParseMapReply(r.Span, internalPort),
            MaxReply, options.InitialTimeout, options.Attempts, options.Time, "NAT-PMP map", cancellationToken).ConfigureAwait(false);
        return reply.Value;
    }

    /// <summary>Parses an external-address reply (RFC 6886 §3.2): 12 bytes, version 0, opcode 128, result, epoch, address.</summary>
    internal static IPAddress ParseExternalAddress(ReadOnlySpan<byte> reply)
    {
        CheckHeader(reply, 128, 12);
        var address = new IPAddress(reply.Slice(8, 4));
        if (address.Equals(IPAddress.Any))
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "NAT-PMP: the gateway reports external address 0.0.0.0 (it has none yet)");
        return address;
    }

    /// <summary>Parses a map reply (RFC 6886 §3.3): 16 bytes, version 0, opcode 130, result, epoch, internal port, external port, lifetime.
    /// Null for a reply about another internal port (an earlier request's answer).</summary>
    internal static StrongBox<(int Port, uint Lifetime)>? ParseMapReply(ReadOnlySpan<byte> reply, int internalPort)
    {
        CheckHeader(reply, 130, 16);
        if (BinaryPrimitives.ReadUInt16BigEndian(reply[8..]) != internalPort)
            return null;
        var port = BinaryPrimitives.ReadUInt16BigEndian(reply[10..]);
        var lifetime = BinaryPrimitives.ReadUInt32BigEndian(reply[12..]);
        if (port == 0 && lifetime != 0)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, "NAT-PMP: the gateway granted external port 0");
        return new((port, lifetime));
    }

    private static void CheckHeader(ReadOnlySpan<byte> reply, byte opcode, int length)
    {
        if (reply.Length < 4)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"NAT-PMP: reply of {reply.Length} bytes is shorter than a header");
        if (reply[0] != 0)
            throw new PortMappingException(PortMappingErrorCode.UnsupportedVersion, $"NAT-PMP: reply has version {reply[0]}, not 0");
        if (reply[1] != opcode)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"NAT-PMP: reply has opcode {reply[1]}, expected {opcode}");
        var result = BinaryPrimitives.ReadUInt16BigEndian(reply[2..]);
        if (result != 0)
            throw new PortMappingException(result == 1 ? PortMappingErrorCode.UnsupportedVersion : PortMappingErrorCode.Refused,
                $"NAT-PMP: the gateway refused with result {result} ({ResultName(result)})", result);
        if (reply.Length != length)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"NAT-PMP: reply of {reply.Length} bytes, expected {length}");
    }

    private static string ResultName(int result) => result switch
    {
        1 => "unsupported version",
        2 => "not authorized or refused",
        3 => "network failure",
        4 => "out of resources",
        5 => "unsupported opcode",
        _ => "unknown result code",
    };
}
