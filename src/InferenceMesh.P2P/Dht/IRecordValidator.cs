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
