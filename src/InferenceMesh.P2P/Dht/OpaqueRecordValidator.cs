namespace InferenceMesh.P2P.Dht;

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
