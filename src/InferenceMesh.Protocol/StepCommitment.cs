using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>
/// A server's signed statement about one step: "for session S of model M, blocks [<paramref name="BlockStart"/>, end),
/// positions [<paramref name="StartPosition"/>, +<paramref name="Positions"/>), I received the input whose SHA-256 is
/// <paramref name="InputHash"/> and returned the output whose SHA-256 is <paramref name="OutputHash"/>". Carried in
/// <see cref="StepResult"/>; the client already holds both activations, so hashes of the whole tensors commit to every
/// coordinate in 64 bytes (a top-k digest would commit to fewer for more bytes).
/// </summary>
/// <param name="Signature">Ed25519 over <see cref="SignedBytes(string, string, int)"/> by the server's libp2p identity key (64 bytes).</param>
public sealed record StepCommitment(int BlockStart, int StartPosition, int Positions, byte[] InputHash, byte[] OutputHash, byte[] Signature)
{
    /// <summary>Bytes of a SHA-256 hash.</summary>
    public const int HashLength = 32;

    /// <summary>Bytes of an Ed25519 signature.</summary>
    public const int SignatureLength = 64;

    private static readonly byte[] Domain = Encoding.ASCII.GetBytes("inferencemesh/commitment/1\0");

    /// <summary>SHA-256 of an activation's little-endian bytes: what a commitment names an input or output by.</summary>
    public static byte[] Hash(TensorData activation) => SHA256.HashData(activation.Bytes.Span);

    /// <summary>
    /// The bytes signed: a domain tag, then the model id, session id, block range, positions and both hashes, so a
    /// signature cannot be moved to another session, model, block range or position.
    /// </summary>
    public static byte[] SignedBytes(string modelId, string sessionId, int blockStart, int blockEnd, int startPosition, int positions, ReadOnlySpan<byte> inputHash, ReadOnlySpan<byte> outputHash)
    {
        var model = Encoding.UTF8.GetBytes(modelId);
        var session = Encoding.UTF8.GetBytes(sessionId);
        var bytes = new byte[Domain.Length + 4 + model.Length + 4 + session.Length + 16 + 2 * HashLength];
        var span = bytes.AsSpan();
        Domain.CopyTo(span);
        var at = Domain.Length;
        BinaryPrimitives.WriteInt32BigEndian(span[at..], model.Length); at += 4;
        model.CopyTo(span[at..]); at += model.Length;
        BinaryPrimitives.WriteInt32BigEndian(span[at..], session.Length); at += 4;
        session.CopyTo(span[at..]); at += session.Length;
        foreach (var value in (ReadOnlySpan<int>)[blockStart, blockEnd, startPosition, positions])
        {
            BinaryPrimitives.WriteInt32BigEndian(span[at..], value);
            at += 4;
        }
        inputHash.CopyTo(span[at..]); at += HashLength;
        outputHash.CopyTo(span[at..]);
        return bytes;
    }

    /// <summary>What <see cref="Signature"/> signs, for the step result this commitment came in.</summary>
    public byte[] SignedBytes(string modelId, string sessionId, int blockEnd) =>
        SignedBytes(modelId, sessionId, BlockStart, blockEnd, StartPosition, Positions, InputHash, OutputHash);
}
