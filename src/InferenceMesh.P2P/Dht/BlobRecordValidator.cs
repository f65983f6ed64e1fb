using System.Security.Cryptography;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The <c>/blob/&lt;sha-256 hex&gt;</c> namespace: content-addressed chunks (fraud evidence). A value is valid only when
/// its SHA-256 is the hash its key names and it is at most <see cref="MaxValueLength"/> bytes, so nobody can store
/// anything under a key but the one chunk it names. Thread-safe.
/// </summary>
public sealed class BlobRecordValidator : IRecordValidator
{
    /// <summary>The namespace.</summary>
    public const string Namespace = "blob";

    /// <summary>Largest chunk, in bytes: small enough that a node holding many records holds little memory per record.</summary>
    public const int MaxValueLength = 32 * 1024;

    /// <summary>The key of the chunk <paramref name="value"/>.</summary>
    public static byte[] KeyFor(ReadOnlySpan<byte> value) => KeyForHash(SHA256.HashData(value));

    /// <summary>The key of the chunk whose SHA-256 is <paramref name="hash"/>.</summary>
    public static byte[] KeyForHash(ReadOnlySpan<byte> hash) =>
        System.Text.Encoding.ASCII.GetBytes($"/{Namespace}/{Convert.ToHexStringLower(hash)}");

    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (value.Length is 0 or > MaxValueLength)
            throw new DhtException(DhtErrorCode.InvalidRecord, $"blob of {value.Length} bytes is empty or over {MaxValueLength}");
        if (!key.SequenceEqual(KeyFor(value)))
            throw new DhtException(DhtErrorCode.InvalidRecord, $"blob does not hash to its key {System.Text.Encoding.ASCII.GetString(key[..Math.Min(key.Length, 80)])}");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;
}
