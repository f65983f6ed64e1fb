using System.Runtime.InteropServices;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import;

/// <summary>
/// Reads and writes llama2.c checkpoints (the legacy format: seven int32 header fields, then float32 arrays).
/// A positive vocab size in the header means the classifier shares the token embedding.
/// </summary>
public static class Llama2cCheckpoint
{
    private const int HeaderInts = 7;

    public static LlamaWeights Read(string path)
    {
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"checkpoint {path} does not exist");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < HeaderInts * 4)
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"checkpoint {path} is truncated: {bytes.Length} bytes is shorter than its 28-byte header");
        var header = MemoryMarshal.Cast<byte, int>(bytes.AsSpan(0, HeaderInts * 4));
        var shared = header[5] > 0;
        // |int.MinValue| does not exist as an int (found by AFL++: an OverflowException, not a typed error).
        if (header[5] == int.MinValue)
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"{path} is not a llama2.c checkpoint: vocab size {header[5]}");
        var config = new ModelConfig(header[0], header[1], header[2], header[3], header[4], Math.Abs(header[5]), header[6], 1e-5f, 10000f);
        try
        {
            LlamaWeights.Validate(config);
        }
        catch (MeshException e)
        {
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"{path} is not a llama2.c checkpoint: {e.Message}");
        }

        var expected = ExpectedFloatCount(config, shared);
        var actual = (bytes.Length - HeaderInts * 4) / 4L;
        if ((bytes.Length - HeaderInts * 4) % 4 != 0 || actual != expected)
            throw new MeshException(MeshErrorCode.InvalidCheckpoint,
                actual < expected
                    ? $"checkpoint {path} is truncated: the header (dim {config.Dim}, {config.Layers} layers, vocab {config.Vocab}) needs {HeaderInts * 4 + expected * 4} bytes, the file has {bytes.Length}"
                    : $"checkpoint {path} has {bytes.Length} bytes, {HeaderInts * 4 + expected * 4} expected from its header: not a llama2.c legacy checkpoint");

        var offset = 0;
        float[] Take(long count)
        {
            var result = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(HeaderInts * 4)).Slice(offset, checked((int)count)).ToArray();
            offset += (int)count;
            return result;
        }
        int dim = config.Dim, layers = config.Layers, kvDim = config.KvDim, hidden = config.HiddenDim;
        var embedding = Take((long)config.Vocab * dim);
        var rmsAtt = Take((long)layers * dim);
        var wq = Take((long)layers * dim * dim);
        var wk = Take((long)layers * kvDim * dim);
        var wv = Take((long)layers * kvDim * dim);
        var wo = Take((long)layers * dim * dim);
        var rmsFfn = Take((long)layers * dim);
        var w1 = Take((long)layers * hidden * dim);
        var w2 = Take((long)layers * dim * hidden);
        var w3 = Take((long)layers * hidden * dim);
        var rmsFinal = Take(dim);
        offset += config.MaxSequence * config.HeadSize; // the two legacy RoPE tables: recomputed in the graph
        var classifier = shared ? null : Take((long)config.Vocab * dim);

        static float[] Layer(float[] stacked, int layer, int size) => stacked.AsSpan(layer * size, size).ToArray();
        var blocks = Enumerable.Range(0, layers).Select(l => new LlamaBlockWeights(
            Layer(rmsAtt, l, dim), Layer(wq, l, dim * dim), Layer(wk, l, kvDim * dim), Layer(wv, l, kvDim * dim), Layer(wo, l, dim * dim),
            Layer(rmsFfn, l, dim), Layer(w1, l, hidden * dim), Layer(w2, l, dim * hidden), Layer(w3, l, hidden * dim))).ToList();
        return new LlamaWeights(config, embedding, blocks, rmsFinal, classifier);
    }

    /// <summary>
    /// Writes <paramref name="weights"/> as a legacy llama2.c checkpoint, so llama2.c's <c>run.c</c> can run the same weights
    /// (the benchmarks compare against it). The two legacy RoPE tables are written as zeros: <c>run.c</c> skips them, and so does <see cref="Read"/>.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for a model the format cannot hold (biases, q/k norms, a head size apart from dim/heads).</exception>
    public static void Write(LlamaWeights weights, string path)
    {
        var c = weights.Config;
        if (c.HeadDim is not null || c.AttentionBias || c.QkNorm)
            throw new MeshException(MeshErrorCode.InvalidArgument, "a llama2.c checkpoint holds plain Llama 2 blocks: no biases, q/k norms or separate head size");
        using var writer = new BinaryWriter(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20));
        foreach (var value in new[] { c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, weights.Classifier is null ? c.Vocab : -c.Vocab, c.MaxSequence })
            writer.Write(value);
        void Floats(float[] values) => writer.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        Floats(weights.TokenEmbedding);
        foreach (var pick in new Func<LlamaBlockWeights, float[]>[] { b => b.AttentionNorm, b => b.Wq, b => b.Wk, b => b.Wv, b => b.Wo, b => b.FfnNorm, b => b.W1, b => b.W2, b => b.W3 })
            foreach (var block in weights.Blocks)
                Floats(pick(block));
        Floats(weights.FinalNorm);
        Floats(new float[c.MaxSequence * c.HeadSize]);
        if (weights.Classifier is { } classifier) Floats(classifier);
    }

    private static long ExpectedFloatCount(ModelConfig c, bool shared)
    {
        long dim = c.Dim, layers = c.Layers, kv = c.KvDim, hidden = c.HiddenDim;
        var perLayer = dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim;
        return c.Vocab * dim + layers * perLayer + dim + (long)c.MaxSequence * c.HeadSize + (shared ? 0 : c.Vocab * dim);
    }
}
