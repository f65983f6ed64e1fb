using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// Runs stages in order in one process — head, block stages, tail, or one whole-model stage — passing
/// each stage's activation output to the next. Owns and disposes its executors.
/// </summary>
public sealed class StagePipeline : IDisposable
{
    private readonly IReadOnlyList<IStageExecutor> _stages;

    public StagePipeline(IReadOnlyList<IStageExecutor> stages)
    {
        if (stages.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "a pipeline needs at least one stage");
        _stages = stages;
    }

    public IReadOnlyList<IStageExecutor> Stages => _stages;

    /// <summary>Runs <paramref name="tokens"/> at positions from <paramref name="startPosition"/> and returns the logits of every position, <c>[1, t, vocab]</c>,
    /// which the caller owns (dispose it to return its buffer); each stage's intermediate output goes back to the pool after the next stage ran.</summary>
    public TensorData Forward(string sessionId, ReadOnlySpan<int> tokens, int startPosition)
    {
        var ids = new long[tokens.Length];
        for (var i = 0; i < ids.Length; i++) ids[i] = tokens[i];
        var activation = TensorData.FromInt64s([1, ids.Length], ids);
        foreach (var stage in _stages)
        {
            var output = stage.Run(sessionId, activation, startPosition);
            if (!ReferenceEquals(output, activation)) activation.Dispose();
            activation = output;
        }
        return activation;
    }

    /// <summary>Logits of the last position of a step as float32 (fp16 logits converted), a fresh array the caller may overwrite.</summary>
    public float[] LastLogits(string sessionId, ReadOnlySpan<int> tokens, int startPosition)
    {
        using var logits = Forward(sessionId, tokens, startPosition);
        return logits.LastRowAsFloats();
    }

    public void CloseSession(string sessionId)
    {
        foreach (var stage in _stages) stage.CloseSession(sessionId);
    }

    public void Dispose()
    {
        foreach (var stage in _stages) stage.Dispose();
    }
}
