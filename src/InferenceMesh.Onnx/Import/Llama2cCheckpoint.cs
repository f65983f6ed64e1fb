using System.Runtime.InteropServices;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import;

/// <summary>
/// Reads llama2.c checkpoints (the legacy format: seven int32 header fields, then float32 arrays).
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

    private static long ExpectedFloatCount(ModelConfig c, bool shared)
    {
        long dim = c.Dim, layers = c.Layers, kv = c.KvDim, hidden = c.HiddenDim;
        var perLayer = dim + dim * dim + 2 * kv * dim + dim * dim + dim + 3 * hidden * dim;
        return c.Vocab * dim + layers * perLayer + dim + (long)c.MaxSequence * c.HeadSize + (shared ? 0 : c.Vocab * dim);
    }
}
