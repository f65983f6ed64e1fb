using System.Text;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Checks and ranks the records of one key namespace (libp2p's record validator). Implementations are
/// thread-safe and pure but for the clock.
/// </summary>
public interface IRecordValidator
{
    /// <summary>Throws <see cref="DhtException"/> (InvalidRecord) when <paramref name="value"/> is not a valid value for <paramref name="key"/>.</summary>
    void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value);

    /// <summary>Index of the best of several valid values for one key.</summary>
    int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values);
}

/// <summary>
/// A validator whose values are sets that merge rather than replace each other (span announcements:
/// every server of a block adds its own signed entry to the block's record).
/// </summary>
public interface IMergingRecordValidator : IRecordValidator
{
    /// <summary>The union of two valid values for one key, dropping stale entries; the result is valid.</summary>
    byte[] Merge(ReadOnlySpan<byte> key, ReadOnlySpan<byte> existing, ReadOnlySpan<byte> incoming);
}

/// <summary>
/// Validators by namespace: the text between the first two slashes of a key (<c>/pk/…</c> → <c>pk</c>).
/// Keys with no registered namespace are refused (UnknownNamespace), as libp2p does.
/// </summary>
public sealed class RecordValidators
{
    private readonly Dictionary<string, IRecordValidator> _byNamespace = new(StringComparer.Ordinal);

    /// <summary>Validators with <c>/pk/</c> registered.</summary>
    public static RecordValidators WithDefaults()
    {
        var v = new RecordValidators();
        v.Add("pk", new PublicKeyRecordValidator());
        return v;
    }

    /// <summary>Registers (or replaces) the validator of <paramref name="ns"/> (no slashes). Not thread-safe with concurrent use; configure before starting.</summary>
    public RecordValidators Add(string ns, IRecordValidator validator)
    {
        ArgumentException.ThrowIfNullOrEmpty(ns);
        if (ns.Contains('/'))
            throw new ArgumentException("a namespace has no slashes", nameof(ns));
        _byNamespace[ns] = validator;
        return this;
    }

    /// <summary>The namespace of <paramref name="key"/>, or null when it has none.</summary>
    public static string? NamespaceOf(ReadOnlySpan<byte> key)
    {
        if (key.Length < 3 || key[0] != (byte)'/')
            return null;
        var end = key[1..].IndexOf((byte)'/');
        if (end <= 0)
            return null;
        try
        {
            return new UTF8Encoding(false, true).GetString(key.Slice(1, end));
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>The validator for <paramref name="key"/>; throws <see cref="DhtException"/> (UnknownNamespace).</summary>
    public IRecordValidator For(ReadOnlySpan<byte> key)
    {
        var ns = NamespaceOf(key);
        if (ns is null || !_byNamespace.TryGetValue(ns, out var v))
            throw new DhtException(DhtErrorCode.UnknownNamespace, $"no record validator for namespace '{ns ?? "(none)"}'");
        return v;
    }
}

/// <summary>
/// The <c>/pk/</c> namespace: key <c>/pk/</c> ‖ PeerId multihash bytes, value the peer's libp2p
/// <c>PublicKey</c> protobuf, valid when it hashes to that PeerId.
/// </summary>
public sealed class PublicKeyRecordValidator : IRecordValidator
{
    private static readonly byte[] Prefix = "/pk/"u8.ToArray();

    /// <summary>The <c>/pk/</c> key of <paramref name="peer"/>.</summary>
    public static byte[] KeyFor(PeerId peer) => [.. Prefix, .. peer.Span];

    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (!key.StartsWith(Prefix))
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record key lacks its prefix");
        PeerId keyPeer, valuePeer;
        try
        {
            keyPeer = PeerId.FromBytes(key[Prefix.Length..]);
            if (value.Length > Libp2pKeys.MaxKeyMessageLength)
                throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record value too long for a public key");
            valuePeer = PeerId.FromPublicKeyProtobuf(value);
        }
        catch (P2PException e)
        {
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record key is not a PeerId", e);
        }
        if (keyPeer != valuePeer)
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record value is not the public key of the PeerId in its key");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;
}

/// <summary>
/// A validator for an application namespace with no structure: any value up to a size is valid and the
/// selector is a caller's function (default: the first). js-libp2p needs the same namespace configured.
/// </summary>
public sealed class OpaqueRecordValidator(int maxValueLength = 16 * 1024, Func<IReadOnlyList<byte[]>, int>? select = null) : IRecordValidator
{
    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (value.Length > maxValueLength)
            throw new DhtException(DhtErrorCode.InvalidRecord, $"record value of {value.Length} bytes exceeds {maxValueLength}");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => select?.Invoke(values) ?? 0;
}
