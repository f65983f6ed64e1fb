using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import;

/// <summary>All weights of a Llama decoder. <see cref="Classifier"/> is null when the LM head shares the token embedding.</summary>
public sealed record LlamaWeights(ModelConfig Config, float[] TokenEmbedding, IReadOnlyList<LlamaBlockWeights> Blocks, float[] FinalNorm, float[]? Classifier)
    : ILlamaWeightSource
{
    public bool Has(LlamaTensor tensor) => tensor switch
    {
        LlamaTensor.Classifier => Classifier is not null,
        LlamaTensor.QueryBias or LlamaTensor.KeyBias or LlamaTensor.ValueBias or LlamaTensor.QueryNorm or LlamaTensor.KeyNorm => false,
        _ => true,
    };

    public void ReadRows(LlamaTensor tensor, int layer, int startRow, int rowCount, Span<float> destination)
    {
        var values = tensor switch
        {
            LlamaTensor.Embedding => TokenEmbedding,
            LlamaTensor.FinalNorm => FinalNorm,
            LlamaTensor.Classifier => Classifier,
            LlamaTensor.AttentionNorm => Blocks[layer].AttentionNorm,
            LlamaTensor.Query => Blocks[layer].Wq,
            LlamaTensor.Key => Blocks[layer].Wk,
            LlamaTensor.Value => Blocks[layer].Wv,
            LlamaTensor.Output => Blocks[layer].Wo,
            LlamaTensor.FfnNorm => Blocks[layer].FfnNorm,
            LlamaTensor.Gate => Blocks[layer].W1,
            LlamaTensor.Down => Blocks[layer].W2,
            LlamaTensor.Up => Blocks[layer].W3,
            _ => null,
        } ?? throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"this model has no {tensor} tensor");
        var columns = LlamaTensorShapes.Of(Config, tensor).Columns;
        values.AsSpan(startRow * columns, rowCount * columns).CopyTo(destination);
    }

    /// <summary>
    /// Seeded random weights for the same architecture: deterministic for a given seed, scaled so that
    /// activations stay of order one through many blocks (for tests and for benchmarks that need real compute).
    /// </summary>
    public static LlamaWeights Synthetic(ModelConfig config, int seed, bool sharedClassifier = true)
    {
        Validate(config);
        var random = new Random(seed);
        float[] Uniform(int count, float scale)
        {
            var values = new float[count];
            for (var i = 0; i < values.Length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
            return values;
        }
        float[] Norm(int count)
        {
            var values = new float[count];
            for (var i = 0; i < values.Length; i++) values[i] = 1f + (float)(random.NextDouble() - 0.5) * 0.2f;
            return values;
        }
        var dim = config.Dim;
        var blocks = new List<LlamaBlockWeights>(config.Layers);
        var inScale = 1f / MathF.Sqrt(dim);
        var hiddenScale = 1f / MathF.Sqrt(config.HiddenDim);
        for (var l = 0; l < config.Layers; l++)
        {
            blocks.Add(new LlamaBlockWeights(
                Norm(dim),
                Uniform(dim * dim, inScale), Uniform(config.KvDim * dim, inScale), Uniform(config.KvDim * dim, inScale),
                Uniform(dim * dim, inScale / 2),
                Norm(dim),
                Uniform(config.HiddenDim * dim, inScale), Uniform(dim * config.HiddenDim, hiddenScale / 2), Uniform(config.HiddenDim * dim, inScale)));
        }
        var embedding = Uniform(config.Vocab * dim, 1f);
        return new LlamaWeights(config, embedding, blocks, Norm(dim), sharedClassifier ? null : Uniform(config.Vocab * dim, inScale));
    }

    /// <summary>Checks the architecture numbers make a valid Llama decoder; throws <see cref="MeshException"/> otherwise.</summary>
    public static void Validate(ModelConfig config)
    {
        string? problem = null;
        if (config.Dim <= 0 || config.HiddenDim <= 0 || config.Layers <= 0 || config.Heads <= 0 || config.KvHeads <= 0 || config.Vocab <= 0 || config.MaxSequence <= 0 || config.HeadDim is <= 0)
            problem = "every dimension must be positive";
        else if (config.HeadDim is null && config.Dim % config.Heads != 0)
            problem = $"dim {config.Dim} is not a multiple of heads {config.Heads}";
        else if (config.Heads % config.KvHeads != 0)
            problem = $"heads {config.Heads} is not a multiple of kv-heads {config.KvHeads}";
        else if (config.HeadSize % 2 != 0)
            problem = $"head size {config.HeadSize} must be even for rotary embeddings";
        if (problem is not null)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"invalid model architecture: {problem}");
    }
}
