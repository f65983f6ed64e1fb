using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P;

/// <summary>
/// A multiaddr (github.com/multiformats/multiaddr), binary and text. Immutable; equality by bytes.
/// Supports ip4, ip6, tcp, udp, dns, dns4, dns6, p2p, p2p-circuit and memory; other codes or
/// names are rejected with <see cref="P2PException"/> (InvalidEncoding).
/// </summary>
public sealed class Multiaddr : IEquatable<Multiaddr>
{
    /// <summary>Largest encoded multiaddr accepted, in bytes.</summary>
    public const int MaxLength = 1024;
    private const int MaxVarValue = 255;

    private readonly byte[] _bytes;

    private Multiaddr(byte[] bytes, MultiaddrComponent[] components)
    {
        _bytes = bytes;
        Components = components;
    }

    /// <summary>The components in order.</summary>
    public IReadOnlyList<MultiaddrComponent> Components { get; }

    /// <summary>Parses multiaddr text such as <c>/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…</c>.</summary>
    public static Multiaddr Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length > 4 * MaxLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, "multiaddr text too long");
        if (!text.StartsWith('/'))
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"multiaddr '{text}' must start with '/'");
        var parts = text.Split('/');
        var end = parts.Length;
        if (end > 1 && parts[^1].Length == 0) end--; // allow one trailing slash
        var buffer = new List<byte>();
        Span<byte> v = stackalloc byte[UnsignedVarint.MaxBytes];
        for (var i = 1; i < end; i++)
        {
            var name = parts[i];
            var proto = name switch
            {
                "ip4" => MultiaddrProtocol.Ip4,
                "tcp" => MultiaddrProtocol.Tcp,
                "ip6" => MultiaddrProtocol.Ip6,
                "dns" => MultiaddrProtocol.Dns,
                "dns4" => MultiaddrProtocol.Dns4,
                "dns6" => MultiaddrProtocol.Dns6,
                "udp" => MultiaddrProtocol.Udp,
                "p2p-circuit" => MultiaddrProtocol.P2pCircuit,
                "p2p" or "ipfs" => MultiaddrProtocol.P2p,
                "memory" => MultiaddrProtocol.Memory,
                _ => throw new P2PException(P2PErrorCode.InvalidEncoding, $"unknown multiaddr protocol '{name}' in '{text}'"),
            };
            buffer.AddRange(v[..UnsignedVarint.Write(v, (ulong)proto)].ToArray());
            if (proto == MultiaddrProtocol.P2pCircuit)
                continue;
            if (++i >= end)
                throw new P2PException(P2PErrorCode.InvalidEncoding, $"multiaddr '{text}': /{name} needs a value");
            var value = TextToValue(proto, parts[i]);
            if (IsVariable(proto))
                buffer.AddRange(v[..UnsignedVarint.Write(v, (ulong)value.Length)].ToArray());
            buffer.AddRange(value);
        }
        return FromBytes(buffer.ToArray());
    }

    /// <summary>Parses without throwing.</summary>
    public static bool TryParse(string? text, out Multiaddr? addr)
    {
        try
        {
            addr = text is null ? null : Parse(text);
            return addr is not null;
        }
        catch (P2PException)
        {
            addr = null;
            return false;
        }
    }

    /// <summary>Parses the binary form; throws <see cref="P2PException"/> on unknown codes, truncation or bad values.</summary>
    public static Multiaddr FromBytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"multiaddr of {bytes.Length} bytes exceeds {MaxLength}");
        var copy = bytes.ToArray();
        var components = new List<MultiaddrComponent>();
        var pos = 0;
        while (pos < copy.Length)
        {
            if (!UnsignedVarint.TryDecode(copy.AsSpan(pos), out var code, out var n))
                throw new P2PException(P2PErrorCode.InvalidEncoding, "multiaddr has a malformed protocol code");
            pos += n;
            var proto = code switch
            {
                4 or 6 or 41 or 53 or 54 or 55 or 273 or 290 or 421 or 777 => (MultiaddrProtocol)code,
                _ => throw new P2PException(P2PErrorCode.InvalidEncoding, $"unknown multiaddr protocol code {code}"),
            };
            int size;
            if (IsVariable(proto))
            {
                if (!UnsignedVarint.TryDecode(copy.AsSpan(pos), out var len, out n))
                    throw new P2PException(P2PErrorCode.InvalidEncoding, $"multiaddr /{Name(proto)} has a malformed length");
                pos += n;
                if (len > MaxVarValue)
                    throw new P2PException(P2PErrorCode.LimitExceeded, $"multiaddr /{Name(proto)} value of {len} bytes exceeds {MaxVarValue}");
                size = (int)len;
            }
            else
            {
                size = FixedSize(proto);
            }
            if (size > copy.Length - pos)
                throw new P2PException(P2PErrorCode.InvalidEncoding, $"multiaddr truncated in /{Name(proto)}");
            var value = new ReadOnlyMemory<byte>(copy, pos, size);
            Validate(proto, value.Span);
            components.Add(new MultiaddrComponent(proto, value));
            pos += size;
        }
        if (components.Count == 0)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "empty multiaddr");
        return new Multiaddr(copy, components.ToArray());
    }

    /// <summary>The binary form (a copy).</summary>
    public byte[] ToBytes() => (byte[])_bytes.Clone();

    /// <summary>The binary form without copying.</summary>
    public ReadOnlySpan<byte> Span => _bytes;

    /// <summary>The PeerId of the last <c>/p2p/</c> component, or null.</summary>
    public PeerId? PeerId
    {
        get
        {
            for (var i = Components.Count - 1; i >= 0; i--)
                if (Components[i].Protocol == MultiaddrProtocol.P2p)
                    return Identity.PeerId.FromBytes(Components[i].Value.Span);
            return null;
        }
    }

    /// <summary>This address with <c>/p2p/&lt;peerId&gt;</c> appended (replacing a trailing one).</summary>
    public Multiaddr WithPeerId(PeerId peerId) => Parse(WithoutPeerId() + "/p2p/" + peerId);

    /// <summary>This address without a trailing <c>/p2p/…</c> component.</summary>
    public Multiaddr WithoutPeerId()
    {
        if (Components[^1].Protocol != MultiaddrProtocol.P2p || Components.Count == 1)
            return this;
        var sb = new StringBuilder();
        for (var i = 0; i < Components.Count - 1; i++) Append(sb, Components[i]);
        return Parse(sb.ToString());
    }

    /// <summary>The IP end point of an <c>/ip4|ip6/…/tcp/…</c> address, or null.</summary>
    public IPEndPoint? TryGetTcpEndPoint()
    {
        if (Components.Count < 2 || Components[1].Protocol != MultiaddrProtocol.Tcp)
            return null;
        var c = Components[0];
        if (c.Protocol is not (MultiaddrProtocol.Ip4 or MultiaddrProtocol.Ip6))
            return null;
        return new IPEndPoint(new IPAddress(c.Value.Span), BinaryPrimitives.ReadUInt16BigEndian(Components[1].Value.Span));
    }

    /// <summary>
    /// The name, address family and port of a <c>/dns|dns4|dns6/…/tcp/…</c> address, or null. The family is
    /// <see cref="AddressFamily.InterNetwork"/> for dns4, <see cref="AddressFamily.InterNetworkV6"/> for dns6
    /// and <see cref="AddressFamily.Unspecified"/> (either) for dns.
    /// </summary>
    public (string Host, AddressFamily Family, int Port)? TryGetDnsTcpAddress()
    {
        if (Components.Count < 2 || Components[1].Protocol != MultiaddrProtocol.Tcp)
            return null;
        var c = Components[0];
        AddressFamily family;
        switch (c.Protocol)
        {
            case MultiaddrProtocol.Dns: family = AddressFamily.Unspecified; break;
            case MultiaddrProtocol.Dns4: family = AddressFamily.InterNetwork; break;
            case MultiaddrProtocol.Dns6: family = AddressFamily.InterNetworkV6; break;
            default: return null;
        }
        return (System.Text.Encoding.UTF8.GetString(c.Value.Span), family, BinaryPrimitives.ReadUInt16BigEndian(Components[1].Value.Span));
    }

    /// <summary>The <c>/ip4|ip6/…/tcp/…</c> multiaddr of an IP end point.</summary>
    public static Multiaddr FromTcpEndPoint(IPEndPoint ep)
    {
        var ip = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
        var family = ip.AddressFamily == AddressFamily.InterNetworkV6 ? "ip6" : "ip4";
        return Parse($"/{family}/{ip}/tcp/{ep.Port}");
    }

    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var c in Components) Append(sb, c);
        return sb.ToString();
    }

    public bool Equals(Multiaddr? other) => other is not null && _bytes.AsSpan().SequenceEqual(other._bytes);
    public override bool Equals(object? obj) => obj is Multiaddr m && Equals(m);
    public override int GetHashCode()
    {
        var h = new HashCode();
        h.AddBytes(_bytes);
        return h.ToHashCode();
    }

    private static void Append(StringBuilder sb, MultiaddrComponent c)
    {
        sb.Append('/').Append(Name(c.Protocol));
        if (c.Protocol != MultiaddrProtocol.P2pCircuit)
            sb.Append('/').Append(ValueToText(c.Protocol, c.Value.Span));
    }

    internal static string Name(MultiaddrProtocol p) => p switch
    {
        MultiaddrProtocol.Ip4 => "ip4",
        MultiaddrProtocol.Tcp => "tcp",
        MultiaddrProtocol.Ip6 => "ip6",
        MultiaddrProtocol.Dns => "dns",
        MultiaddrProtocol.Dns4 => "dns4",
        MultiaddrProtocol.Dns6 => "dns6",
        MultiaddrProtocol.Udp => "udp",
        MultiaddrProtocol.P2pCircuit => "p2p-circuit",
        MultiaddrProtocol.P2p => "p2p",
        MultiaddrProtocol.Memory => "memory",
        _ => throw new P2PException(P2PErrorCode.InvalidEncoding, $"unknown multiaddr protocol {(int)p}"),
    };

    private static bool IsVariable(MultiaddrProtocol p) =>
        p is MultiaddrProtocol.Dns or MultiaddrProtocol.Dns4 or MultiaddrProtocol.Dns6 or MultiaddrProtocol.P2p;

    private static int FixedSize(MultiaddrProtocol p) => p switch
    {
        MultiaddrProtocol.Ip4 => 4,
        MultiaddrProtocol.Ip6 => 16,
        MultiaddrProtocol.Tcp or MultiaddrProtocol.Udp => 2,
        MultiaddrProtocol.Memory => 8,
        _ => 0,
    };

    private static void Validate(MultiaddrProtocol p, ReadOnlySpan<byte> value)
    {
        switch (p)
        {
            case MultiaddrProtocol.P2p:
                Identity.PeerId.FromBytes(value);
                break;
            case MultiaddrProtocol.Dns or MultiaddrProtocol.Dns4 or MultiaddrProtocol.Dns6:
                if (value.Length == 0 || value.IndexOf((byte)'/') >= 0 || !Ascii.IsValid(value))
                    throw new P2PException(P2PErrorCode.InvalidEncoding, "multiaddr dns name must be non-empty ASCII without '/'");
                break;
        }
    }

    private static byte[] TextToValue(MultiaddrProtocol p, string text)
    {
        switch (p)
        {
            case MultiaddrProtocol.Ip4:
                if (!IPAddress.TryParse(text, out var ip4) || ip4.AddressFamily != AddressFamily.InterNetwork || text.Count(c => c == '.') != 3)
                    throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not an IPv4 address");
                return ip4.GetAddressBytes();
            case MultiaddrProtocol.Ip6:
                if (!IPAddress.TryParse(text, out var ip6) || ip6.AddressFamily != AddressFamily.InterNetworkV6 || ip6.ScopeId != 0)
                    throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not an IPv6 address");
                return ip6.GetAddressBytes();
            case MultiaddrProtocol.Tcp or MultiaddrProtocol.Udp:
                if (!ushort.TryParse(text, System.Globalization.NumberStyles.None, null, out var port))
                    throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not a port number (0-65535)");
                var pb = new byte[2];
                BinaryPrimitives.WriteUInt16BigEndian(pb, port);
                return pb;
            case MultiaddrProtocol.Memory:
                if (!ulong.TryParse(text, System.Globalization.NumberStyles.None, null, out var id))
                    throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not a memory address (u64)");
                var mb = new byte[8];
                BinaryPrimitives.WriteUInt64BigEndian(mb, id);
                return mb;
            case MultiaddrProtocol.P2p:
                return Identity.PeerId.Parse(text).ToBytes();
            default:
                var bytes = System.Text.Encoding.ASCII.GetBytes(text);
                Validate(p, bytes);
                return bytes;
        }
    }

    internal static string ValueToText(MultiaddrProtocol p, ReadOnlySpan<byte> v) => p switch
    {
        MultiaddrProtocol.Ip4 or MultiaddrProtocol.Ip6 => new IPAddress(v).ToString(),
        MultiaddrProtocol.Tcp or MultiaddrProtocol.Udp => BinaryPrimitives.ReadUInt16BigEndian(v).ToString(System.Globalization.CultureInfo.InvariantCulture),
        MultiaddrProtocol.Memory => BinaryPrimitives.ReadUInt64BigEndian(v).ToString(System.Globalization.CultureInfo.InvariantCulture),
        MultiaddrProtocol.P2p => Base58.Encode(v),
        MultiaddrProtocol.P2pCircuit => "",
        _ => System.Text.Encoding.ASCII.GetString(v),
    };
}
