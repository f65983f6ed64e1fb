using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// The context inputs an executor computes from a session's state instead of receiving them over the wire: positions
/// and mask (Hugging Face Optimum's decoder exports), the lengths ONNX Runtime's <c>GroupQueryAttention</c> takes as
/// graph inputs, and the write positions of static-cache exports. Every value follows from two numbers: the positions
/// already cached and the positions in this step.
/// </summary>
public static class ContextInputs
{
    /// <summary><c>[batch, step]</c>: the absolute position of each new token.</summary>
    public const string PositionIds = "position_ids";

    /// <summary><c>[batch, total]</c>: 1 for every cached and new position; with a fixed declared length (static cache), 0 beyond them.</summary>
    public const string AttentionMask = "attention_mask";

    /// <summary><c>[batch]</c>, int32: the total length minus one, as <c>GroupQueryAttention</c> defines it.</summary>
    public const string SeqLensK = "seqlens_k";

    /// <summary>A scalar (or <c>[1]</c>), int32: the total length, cached plus new (<c>GroupQueryAttention</c>).</summary>
    public const string TotalSequenceLength = "total_sequence_length";

    /// <summary><c>[step]</c>: where each new position is written in a static cache (transformers' static-cache exports).</summary>
    public const string CachePosition = "cache_position";

    /// <summary>A scalar (or <c>[1]</c>): the positions already cached (DirectML-style GenAI exports).</summary>
    public const string PastSequenceLength = "past_sequence_length";

    /// <summary>The names this class can compute.</summary>
    public static IReadOnlyList<string> Known { get; } = [PositionIds, AttentionMask, SeqLensK, TotalSequenceLength, CachePosition, PastSequenceLength];

    /// <summary>Whether context input <paramref name="name"/> has one row per sequence of a batch (positions, mask, lengths), not one value for all.</summary>
    public static bool IsPerRow(string name) => name is PositionIds or AttentionMask or SeqLensK;

    /// <summary>Whether <paramref name="name"/> is a context input this class computes.</summary>
    public static bool IsKnown(string name) => Known.Contains(name, StringComparer.Ordinal);

    /// <summary>
    /// The shape and values of context input <paramref name="name"/> for a step of <paramref name="steps"/> new positions
    /// after <paramref name="cached"/> cached ones. <paramref name="declaredShape"/> is the graph's: its rank is kept (a
    /// scalar stays a scalar) and a fixed numeric length (a static cache's mask) is honoured.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidOnnx"/> for an unknown name or a declared rank the input cannot have;
    /// <see cref="MeshErrorCode.ContextOverflow"/> when the positions exceed a fixed declared length.</exception>
    public static ContextValue For(string name, IReadOnlyList<string> declaredShape, int cached, int steps)
    {
        var total = cached + steps;
        var rank = declaredShape.Count;
        return name switch
        {
            PositionIds => new ContextValue(Batched(name, rank, steps), i => cached + i),
            AttentionMask => Mask(declaredShape, total),
            SeqLensK => new ContextValue(Ranked(name, rank, 1, [1]), _ => total - 1),
            TotalSequenceLength => new ContextValue(ScalarShape(name, rank), _ => total),
            PastSequenceLength => new ContextValue(ScalarShape(name, rank), _ => cached),
            CachePosition => new ContextValue(Ranked(name, rank, 1, [steps]), i => cached + i),
            _ => throw new MeshException(MeshErrorCode.InvalidOnnx,
                $"context input '{name}' is not one an executor can compute (known: {string.Join(", ", Known)})"),
        };
    }

    private static ContextValue Mask(IReadOnlyList<string> declaredShape, int total)
    {
        var length = declaredShape.Count == 2 && long.TryParse(declaredShape[1], out var fixedLength) ? fixedLength : total;
        if (length < total)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"the graph's attention mask holds {length} positions; this step needs {total}");
        return new ContextValue(Batched(AttentionMask, declaredShape.Count, (int)length), i => i < total ? 1 : 0);
    }

    private static long[] Batched(string name, int rank, int length) => Ranked(name, rank, 2, [1, length]);

    private static long[] ScalarShape(string name, int rank) => rank switch
    {
        0 => [],
        1 => [1],
        _ => throw new MeshException(MeshErrorCode.InvalidOnnx, $"context input '{name}' is a scalar or [1], not rank {rank}"),
    };

    private static long[] Ranked(string name, int rank, int expected, long[] shape) => rank == expected
        ? shape
        : throw new MeshException(MeshErrorCode.InvalidOnnx, $"context input '{name}' must have rank {expected}, not {rank}");
}
