using System.Text;

namespace InferenceMesh.P2P.Dht;

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
