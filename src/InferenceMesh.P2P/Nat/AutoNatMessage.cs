using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Encoding;

namespace InferenceMesh.P2P.Nat;

/// <summary>The AutoNAT v1 <c>Message</c> protobuf: a <c>DIAL</c> (peer id and addresses) or a <c>DIAL_RESPONSE</c> (status, text, address).</summary>
internal sealed record AutoNatMessage
{
    public const int MaxAddresses = 64;
    public const int MaxStatusText = 256;

    public bool IsDial { get; init; }
    public PeerId? Peer { get; init; }
    public IReadOnlyList<Multiaddr> Addresses { get; init; } = [];
    public AutoNatStatus Status { get; init; }
    public string Text { get; init; } = "";
    public Multiaddr? Address { get; init; }

    public static byte[] EncodeDial(PeerId peer, IEnumerable<Multiaddr> addresses)
    {
        var info = new ProtoWriter();
        info.WriteBytes(1, peer.ToBytes());
        foreach (var a in addresses) info.WriteBytes(2, a.Span);
        var dial = new ProtoWriter();
        dial.WriteBytes(1, info.WrittenSpan);
        var message = new ProtoWriter();
        message.WriteVarint(1, 0);
        message.WriteBytes(2, dial.WrittenSpan);
        return message.ToArray();
    }

    public static byte[] EncodeResponse(AutoNatStatus status, string text, Multiaddr? address)
    {
        var response = new ProtoWriter();
        response.WriteVarint(1, (ulong)status);
        if (text.Length > 0) response.WriteString(2, text.Length <= MaxStatusText ? text : text[..MaxStatusText]);
        if (address is not null) response.WriteBytes(3, address.Span);
        var message = new ProtoWriter();
        message.WriteVarint(1, 1);
        message.WriteBytes(3, response.WrittenSpan);
        return message.ToArray();
    }

    /// <summary>Decodes a message; unknown fields are skipped, anything malformed is a <see cref="P2PException"/> (InvalidEncoding or LimitExceeded).</summary>
    public static AutoNatMessage Decode(ReadOnlySpan<byte> bytes)
    {
        static Exception Fail(string why) => new P2PException(P2PErrorCode.InvalidEncoding, $"AutoNAT message: {why}");
        var reader = new ProtoReader(bytes, Fail);
        ulong? type = null;
        AutoNatMessage result = new();
        while (reader.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: type = reader.ReadVarintField(); break;
                case 2: result = result with { IsDial = true, Peer = null, Addresses = [] }; result = DecodeDial(reader.ReadBytes(), result); break;
                case 3: result = DecodeResponse(reader.ReadBytes(), result); break;
                default: reader.Skip(); break;
            }
        }
        return type switch
        {
            0 when result.IsDial => result,
            1 when !result.IsDial => result,
            0 or 1 => throw Fail($"type {type} without its {(type == 0 ? "dial" : "dialResponse")} field"),
            null => throw Fail("no type"),
            _ => throw Fail($"unknown type {type}"),
        };
    }

    private static AutoNatMessage DecodeDial(ReadOnlySpan<byte> bytes, AutoNatMessage message)
    {
        static Exception Fail(string why) => new P2PException(P2PErrorCode.InvalidEncoding, $"AutoNAT dial: {why}");
        var dial = new ProtoReader(bytes, Fail);
        while (dial.TryReadTag(out var field))
        {
            if (field != 1) { dial.Skip(); continue; }
            var info = new ProtoReader(dial.ReadBytes(), Fail);
            var addresses = new List<Multiaddr>();
            PeerId? peer = null;
            while (info.TryReadTag(out var f))
            {
                if (f == 1) peer = PeerId.FromBytes(info.ReadBytes());
                else if (f == 2)
                {
                    if (addresses.Count == MaxAddresses)
                        throw new P2PException(P2PErrorCode.LimitExceeded, $"AutoNAT dial: more than {MaxAddresses} addresses");
                    addresses.Add(Multiaddr.FromBytes(info.ReadBytes()));
                }
                else info.Skip();
            }
            message = message with { Peer = peer, Addresses = addresses };
        }
        return message;
    }

    private static AutoNatMessage DecodeResponse(ReadOnlySpan<byte> bytes, AutoNatMessage message)
    {
        static Exception Fail(string why) => new P2PException(P2PErrorCode.InvalidEncoding, $"AutoNAT dialResponse: {why}");
        var reader = new ProtoReader(bytes, Fail);
        ulong? status = null;
        while (reader.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: status = reader.ReadVarintField(); break;
                case 2:
                    var text = reader.ReadString();
                    message = message with { Text = text.Length <= MaxStatusText ? text : text[..MaxStatusText] };
                    break;
                case 3: message = message with { Address = Multiaddr.FromBytes(reader.ReadBytes()) }; break;
                default: reader.Skip(); break;
            }
        }
        if (status is not (0 or 100 or 101 or 200 or 300))
            throw Fail(status is null ? "no status" : $"unknown status {status}");
        return message with { IsDial = false, Status = (AutoNatStatus)status.Value };
    }
}
