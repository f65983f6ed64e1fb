using System.Buffers;
using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Relay;

/// <summary>
/// A reservation voucher: the relay's statement that <see cref="Peer"/> holds a slot until <see cref="Expiration"/>,
/// carried in a libp2p signed envelope (RFC 0002) with domain <c>libp2p-relay-rsvp</c> and payload type 0x0302.
/// </summary>
/// <param name="Relay">The relay that signed it.</param>
/// <param name="Peer">The peer holding the reservation.</param>
/// <param name="Expiration">Unix seconds after which the voucher is void.</param>
public sealed record RelayVoucher(PeerId Relay, PeerId Peer, ulong Expiration)
{
    /// <summary>The signed envelope's domain string.</summary>
    public const string Domain = "libp2p-relay-rsvp";

    /// <summary>Largest envelope accepted, in bytes.</summary>
    public const int MaxEnvelope = 2048;

    // The multicodec 0x0302 as its two big-endian bytes, as go-libp2p and js-libp2p write it (not as a varint, 0x82 0x06,
    // which the specs' wording suggests and js-libp2p's relay refuses to match).
    private static readonly byte[] PayloadType = [0x03, 0x02];

    /// <summary>Signs this voucher with the relay's key into a signed envelope. The key must be the relay's.</summary>
    public byte[] Seal(Ed25519KeyPair relayKey)
    {
        ArgumentNullException.ThrowIfNull(relayKey);
        if (relayKey.PeerId != Relay)
            throw new ArgumentException("the voucher must be sealed with the relay's own key", nameof(relayKey));
        var payload = new ProtoWriter();
        payload.WriteBytes(1, Relay.Span);
        payload.WriteBytes(2, Peer.Span);
        payload.WriteVarint(3, Expiration);
        var body = payload.ToArray();
        var envelope = new ProtoWriter();
        envelope.WriteBytes(1, relayKey.PublicKeyProtobuf);
        envelope.WriteBytes(2, PayloadType);
        envelope.WriteBytes(3, body);
        envelope.WriteBytes(5, relayKey.Sign(SignedBytes(body)));
        return envelope.ToArray();
    }

    /// <summary>
    /// Opens a signed envelope: checks its size, domain, payload type and signature, and that the signer is the voucher's relay.
    /// Throws <see cref="P2PException"/> (InvalidEncoding, LimitExceeded, HandshakeFailed for a bad signature).
    /// </summary>
    public static RelayVoucher Open(ReadOnlySpan<byte> envelope)
    {
        if (envelope.Length > MaxEnvelope)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"voucher envelope of {envelope.Length} bytes exceeds {MaxEnvelope}");
        byte[]? key = null, type = null, payload = null, signature = null;
        var r = new ProtoReader(envelope);
        while (r.TryReadTag(out var f))
        {
            switch (f)
            {
                case 1: key = r.ReadBytes().ToArray(); break;
                case 2: type = r.ReadBytes().ToArray(); break;
                case 3: payload = r.ReadBytes().ToArray(); break;
                case 5: signature = r.ReadBytes().ToArray(); break;
                default: r.Skip(); break;
            }
        }
        if (key is null || type is null || payload is null || signature is null)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "voucher envelope lacks a key, payload type, payload or signature");
        if (!type.AsSpan().SequenceEqual(PayloadType))
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"voucher envelope has payload type {Convert.ToHexString(type)}, not 8206");
        var raw = Libp2pKeys.DecodeEd25519PublicKey(key);
        if (!Libp2pKeys.VerifyEd25519(raw, SignedBytes(payload), signature))
            throw new P2PException(P2PErrorCode.HandshakeFailed, "voucher signature does not verify");
        PeerId? relay = null, peer = null;
        ulong? expiration = null;
        var p = new ProtoReader(payload);
        while (p.TryReadTag(out var f))
        {
            switch (f)
            {
                case 1: relay = PeerId.FromBytes(p.ReadBytes()); break;
                case 2: peer = PeerId.FromBytes(p.ReadBytes()); break;
                case 3: expiration = p.ReadVarintField(); break;
                default: p.Skip(); break;
            }
        }
        if (relay is null || peer is null || expiration is null)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "voucher lacks relay, peer or expiration");
        if (relay != PeerId.FromPublicKeyProtobuf(key))
            throw new P2PException(P2PErrorCode.PeerIdMismatch, $"voucher for relay {relay} is signed by {PeerId.FromPublicKeyProtobuf(key)}");
        return new RelayVoucher(relay, peer, expiration.Value);
    }

    private static byte[] SignedBytes(ReadOnlySpan<byte> payload)
    {
        var domain = System.Text.Encoding.UTF8.GetBytes(Domain);
        var buffer = new ArrayBufferWriter<byte>(domain.Length + payload.Length + 16);
        UnsignedVarint.Write(buffer, (ulong)domain.Length);
        buffer.Write(domain);
        UnsignedVarint.Write(buffer, (ulong)PayloadType.Length);
        buffer.Write(PayloadType);
        UnsignedVarint.Write(buffer, (ulong)payload.Length);
        buffer.Write(payload);
        return buffer.WrittenSpan.ToArray();
    }
}
