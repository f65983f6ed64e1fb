using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>Helpers shared by the batched executor paths.</summary>
public static class StageBatch
{
    /// <summary>The error an item gets when its session already has an item earlier in the same batch (calls for one session must not overlap).</summary>
    public static MeshException Twice(string sessionId) =>
        new(MeshErrorCode.InvalidArgument, $"session {sessionId} appears twice in one batch; its steps must run one after the other");

    /// <summary>
    /// Positions <paramref name="start"/> .. <paramref name="start"/> + <paramref name="count"/> - 1 of a <c>[1, t]</c> or <c>[1, t, …]</c>
    /// tensor (axis 1) as a new pooled tensor, which the caller disposes.
    /// </summary>
    public static TensorData Slice(TensorData tensor, int start, int count)
    {
        if (tensor.Shape.Length < 2 || tensor.Shape[0] != 1 || start < 0 || count < 1 || start + count > tensor.Shape[1])
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"cannot take positions {start}..{start + count - 1} of {tensor}");
        var perPosition = tensor.Bytes.Length / (int)tensor.Shape[1];
        long[] shape = [1, count, .. tensor.Shape[2..]];
        return TensorData.CopyToPooled(tensor.Type, shape, tensor.Bytes.Span.Slice(start * perPosition, count * perPosition));
    }

    /// <summary>The tensors (<c>[1, t_i, …]</c>, same type and trailing shape) joined along axis 1 into a new tensor (an array of its own: prefills are rare next to decode steps).</summary>
    public static TensorData Concat(IReadOnlyList<TensorData> parts)
    {
        if (parts.Count == 0) throw new MeshException(MeshErrorCode.ShapeMismatch, "nothing to join");
        var first = parts[0];
        long positions = 0;
        var bytes = 0;
        foreach (var part in parts)
        {
            if (part.Type != first.Type || part.Shape.Length != first.Shape.Length || part.Shape[0] != 1 || !part.Shape.AsSpan(2).SequenceEqual(first.Shape.AsSpan(2)))
                throw new MeshException(MeshErrorCode.ShapeMismatch, $"cannot join {part} to {first} along positions");
            positions += part.Shape[1];
            bytes += part.Bytes.Length;
        }
        var joined = new byte[bytes];
        var offset = 0;
        foreach (var part in parts)
        {
            part.Bytes.Span.CopyTo(joined.AsSpan(offset));
            offset += part.Bytes.Length;
        }
        long[] shape = [1, positions, .. first.Shape[2..]];
        return new TensorData(first.Type, shape, joined);
    }
}
