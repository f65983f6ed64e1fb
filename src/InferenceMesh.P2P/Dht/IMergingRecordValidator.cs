namespace InferenceMesh.P2P.Dht;

/// <summary>
/// A validator whose values are sets that merge rather than replace each other (span announcements:
/// every server of a block adds its own signed entry to the block's record).
/// </summary>
public interface IMergingRecordValidator : IRecordValidator
{
    /// <summary>The union of two valid values for one key, dropping stale entries; the result is valid.</summary>
    byte[] Merge(ReadOnlySpan<byte> key, ReadOnlySpan<byte> existing, ReadOnlySpan<byte> incoming);
}
