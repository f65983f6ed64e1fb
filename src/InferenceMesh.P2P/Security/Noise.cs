using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// libp2p Noise (<c>/noise</c>): Noise_XX_25519_ChaChaPoly_SHA256 with the libp2p handshake payload
/// (identity key, signature over the static key — verified — and the <c>stream_muxers</c> extension).
/// Messages are framed by a 2-byte big-endian length.
/// </summary>
public static class Noise
{
    /// <summary>The multistream protocol id.</summary>
    public const string ProtocolId = "/noise";

    /// <summary>Largest handshake message accepted, in bytes (real ones are a few hundred).</summary>
    public const int MaxHandshakeMessage = 8192;

    /// <summary>Largest transport message (2-byte length limit), in bytes, tag included.</summary>
    public const int MaxTransportMessage = 65535;

    internal const int DhLength = 32;
    private static readonly byte[] SignaturePrefix = "noise-libp2p-static-key:"u8.ToArray();

    internal static byte[] SignedData(ReadOnlySpan<byte> staticKey)
    {
        var d = new byte[SignaturePrefix.Length + staticKey.Length];
        SignaturePrefix.CopyTo(d, 0);
        staticKey.CopyTo(d.AsSpan(SignaturePrefix.Length));
        return d;
    }

    /// <summary>
    /// Runs the handshake as initiator (dialer) over a raw connection already switched to <c>/noise</c>.
    /// Fails with <see cref="P2PErrorCode.PeerIdMismatch"/> before sending its own identity if
    /// <paramref name="expectedPeer"/> is given and the responder is someone else. Safe to cancel: the
    /// connection must then be disposed by the caller, as after any failure.
    /// </summary>
    public static Task<NoiseSecureChannel> InitiateAsync(ITransportConnection connection, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, PeerId? expectedPeer, MemoryPool<byte>? pool, CancellationToken cancellationToken) =>
        RunAsync(connection, true, local, localMuxers, expectedPeer, pool ?? MemoryPool<byte>.Shared, cancellationToken);

    /// <summary>Runs the handshake as responder (listener). Same cancellation rules as <see cref="InitiateAsync"/>.</summary>
    public static Task<NoiseSecureChannel> RespondAsync(ITransportConnection connection, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, MemoryPool<byte>? pool, CancellationToken cancellationToken) =>
        RunAsync(connection, false, local, localMuxers, null, pool ?? MemoryPool<byte>.Shared, cancellationToken);

    private static async Task<NoiseSecureChannel> RunAsync(ITransportConnection conn, bool initiator, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, PeerId? expectedPeer, MemoryPool<byte> pool, CancellationToken ct)
    {
        using var ss = new SymmetricState();
        using var e = new X25519KeyPair();
        var payload = EncodePayload(local, localMuxers);
        byte[] re, rs;
        HandshakePayload remote;
        if (initiator)
        {
            // -> e
            ss.MixHash(e.PublicKey);
            var m1 = Concat(e.PublicKey, ss.EncryptAndHash(ReadOnlySpan<byte>.Empty));
            await WriteFrameAsync(conn.Output, m1, ct).ConfigureAwait(false);
            // <- e, ee, s, es, payload
            var m2 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m2.Length < DhLength + DhLength + CipherState.TagLength + CipherState.TagLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 2 of {m2.Length} bytes is too short");
            re = m2[..DhLength];
            ss.MixHash(re);
            ss.MixKey(e.Agree(re));
            rs = ss.DecryptAndHash(m2.AsSpan(DhLength, DhLength + CipherState.TagLength));
            ss.MixKey(e.Agree(rs));
            remote = DecodeAndVerify(ss.DecryptAndHash(m2.AsSpan(DhLength + DhLength + CipherState.TagLength)), rs);
            if (expectedPeer is not null && remote.PeerId != expectedPeer)
                throw new P2PException(P2PErrorCode.PeerIdMismatch, $"dialled {expectedPeer} but the remote is {remote.PeerId}");
            // -> s, se, payload
            var c1 = ss.EncryptAndHash(local.Static.PublicKey);
            ss.MixKey(local.Static.Agree(re));
            var m3 = Concat(c1, ss.EncryptAndHash(payload));
            await WriteFrameAsync(conn.Output, m3, ct).ConfigureAwait(false);
        }
        else
        {
            // -> e
            var m1 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m1.Length < DhLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 1 of {m1.Length} bytes is too short");
            re = m1[..DhLength];
            ss.MixHash(re);
            ss.DecryptAndHash(m1.AsSpan(DhLength)); // payload of message 1 is unauthenticated and ignored
            // <- e, ee, s, es, payload
            ss.MixHash(e.PublicKey);
            ss.MixKey(e.Agree(re));
            var c1 = ss.EncryptAndHash(local.Static.PublicKey);
            ss.MixKey(local.Static.Agree(re));
            var m2 = Concat(Concat(e.PublicKey, c1), ss.EncryptAndHash(payload));
            await WriteFrameAsync(conn.Output, m2, ct).ConfigureAwait(false);
            // -> s, se, payload
            var m3 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m3.Length < DhLength + CipherState.TagLength + CipherState.TagLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 3 of {m3.Length} bytes is too short");
            rs = ss.DecryptAndHash(m3.AsSpan(0, DhLength + CipherState.TagLength));
            ss.MixKey(e.Agree(rs));
            remote = DecodeAndVerify(ss.DecryptAndHash(m3.AsSpan(DhLength + CipherState.TagLength)), rs);
        }
        var muxer = SelectMuxer(initiator, localMuxers, remote.Muxers);
        var (c1s, c2s) = ss.Split();
        var (send, recv) = initiator ? (c1s, c2s) : (c2s, c1s);
        return new NoiseSecureChannel(conn, send, recv, remote.PeerId, remote.Muxers, muxer, pool);
    }

    /// <summary>
    /// Early muxer choice: when both lists are non-empty, the first of the initiator's list the responder
    /// also lists (inlined-muxer-negotiation spec); when only one side lists muxers, the first of that
    /// list that this side supports (as js-libp2p does); null when both are empty (negotiate over multistream).
    /// </summary>
    internal static string? SelectMuxer(bool initiator, IReadOnlyList<string> local, IReadOnlyList<string> remote)
    {
        if (local.Count == 0 && remote.Count == 0)
            return null;
        var (first, second) = initiator ? (local, remote) : (remote, local);
        if (first.Count == 0) (first, second) = (second, first);
        var supported = second.Count > 0 ? second : MuxerSupport;
        foreach (var m in first)
            if (supported.Contains(m) && MuxerSupport.Contains(m))
                return m;
        throw new P2PException(P2PErrorCode.HandshakeFailed,
            $"early muxer negotiation: no common muxer between [{string.Join(", ", local)}] and [{string.Join(", ", remote)}]");
    }

    internal static readonly IReadOnlyList<string> MuxerSupport = [Muxing.YamuxSession.ProtocolId];

    internal sealed record HandshakePayload(PeerId PeerId, byte[] IdentityKey, IReadOnlyList<string> Muxers);

    private static byte[] EncodePayload(NoiseIdentity local, IReadOnlyList<string> muxers)
    {
        var w = new ProtoWriter();
        w.WriteBytes(1, local.Identity.PublicKeyProtobuf);
        w.WriteBytes(2, local.Signature);
        if (muxers.Count > 0)
        {
            var ext = new ProtoWriter();
            foreach (var m in muxers) ext.WriteString(2, m);
            w.WriteBytes(4, ext.ToArray());
        }
        return w.ToArray();
    }

    internal static HandshakePayload DecodeAndVerify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> remoteStatic)
    {
        byte[]? key = null, sig = null;
        var muxers = new List<string>();
        try
        {
            var r = new ProtoReader(payload);
            while (r.TryReadTag(out var f))
            {
                switch (f)
                {
                    case 1: key = r.ReadBytes().ToArray(); break;
                    case 2: sig = r.ReadBytes().ToArray(); break;
                    case 4:
                        var ext = new ProtoReader(r.ReadBytes());
                        while (ext.TryReadTag(out var ef))
                        {
                            if (ef == 2)
                            {
                                if (muxers.Count >= 16)
                                    throw new P2PException(P2PErrorCode.LimitExceeded, "Noise payload lists more than 16 muxers");
                                muxers.Add(ext.ReadString());
                            }
                            else ext.Skip();
                        }
                        break;
                    default: r.Skip(); break;
                }
            }
        }
        catch (P2PException ex) when (ex.P2PCode == P2PErrorCode.InvalidEncoding)
        {
            throw new P2PException(P2PErrorCode.HandshakeFailed, $"malformed Noise handshake payload: {ex.Message}", ex);
        }
        if (key is null || sig is null)
            throw new P2PException(P2PErrorCode.HandshakeFailed, "Noise handshake payload lacks identity key or signature");
        byte[] raw;
        try
        {
            raw = Libp2pKeys.DecodeEd25519PublicKey(key);
        }
        catch (P2PException ex)
        {
            throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise identity key rejected: {ex.Message}", ex);
        }
        if (!Libp2pKeys.VerifyEd25519(raw, SignedData(remoteStatic), sig))
            throw new P2PException(P2PErrorCode.HandshakeFailed, "Noise identity signature over the static key is invalid");
        return new HandshakePayload(PeerId.FromPublicKeyProtobuf(key), key, muxers);
    }

    private static byte[] Concat(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var r = new byte[a.Length + b.Length];
        a.CopyTo(r);
        b.CopyTo(r.AsSpan(a.Length));
        return r;
    }

    private static async ValueTask WriteFrameAsync(PipeWriter w, byte[] message, CancellationToken ct)
    {
        var span = w.GetSpan(2 + message.Length);
        BinaryPrimitives.WriteUInt16BigEndian(span, checked((ushort)message.Length));
        message.CopyTo(span[2..]);
        w.Advance(2 + message.Length);
        var r = await w.FlushAsync(ct).ConfigureAwait(false);
        if (r.IsCompleted || r.IsCanceled)
            throw new P2PException(P2PErrorCode.HandshakeFailed, "connection closed during the Noise handshake");
    }

    internal static int ReadU16(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> lb = stackalloc byte[2];
        buffer.Slice(0, 2).CopyTo(lb);
        return BinaryPrimitives.ReadUInt16BigEndian(lb);
    }

    private static async ValueTask<byte[]> ReadFrameAsync(PipeReader reader, CancellationToken ct)
    {
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (buffer.Length >= 2)
                {
                    int len = ReadU16(buffer);
                    if (len > MaxHandshakeMessage)
                        throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise handshake message of {len} bytes exceeds {MaxHandshakeMessage}");
                    if (buffer.Length >= 2 + len)
                    {
                        var msg = buffer.Slice(2, len).ToArray();
                        consumed = examined = buffer.GetPosition(2 + len);
                        return msg;
                    }
                }
                if (result.IsCompleted || result.IsCanceled)
                    throw new P2PException(P2PErrorCode.HandshakeFailed, "connection closed during the Noise handshake (truncated message)");
            }
            finally
            {
                reader.AdvanceTo(consumed, examined);
            }
        }
    }
}
