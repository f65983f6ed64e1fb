namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>Plain C# reference for the Llama block operations, written for clarity (double accumulators where it matters not).</summary>
internal static class ReferenceLlama
{
    public static float[] MatMul(float[] x, float[] w, int rows, int inDim, int outDim)
    {
        var y = new float[rows * outDim];
        for (var r = 0; r < rows; r++)
            for (var c = 0; c < outDim; c++)
            {
                var sum = 0f;
                for (var k = 0; k < inDim; k++) sum += x[r * inDim + k] * w[k * outDim + c];
                y[r * outDim + c] = sum;
            }
        return y;
    }

    public static float[] RmsNorm(float[] x, float[] weight, int rows, int dim, float eps)
    {
        var y = new float[x.Length];
        for (var r = 0; r < rows; r++)
        {
            var ss = 0f;
            for (var i = 0; i < dim; i++) ss += x[r * dim + i] * x[r * dim + i];
            var inv = 1f / MathF.Sqrt(ss / dim + eps);
            for (var i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * weight[i];
        }
        return y;
    }

    public static (float[] Cos, float[] Sin) RopeTables(int positions, int headSize, float theta = 10000f)
    {
        var half = headSize / 2;
        var cos = new float[positions * half];
        var sin = new float[positions * half];
        for (var p = 0; p < positions; p++)
            for (var j = 0; j < half; j++)
            {
                var invFreq = 1f / MathF.Pow(theta, 2 * j / (float)headSize);
                var angle = p * invFreq;
                cos[p * half + j] = MathF.Cos(angle);
                sin[p * half + j] = MathF.Sin(angle);
            }
        return (cos, sin);
    }

    /// <summary>Rotates adjacent pairs of each head of v [rows, heads, headSize]; row r at position start + r. Independent of tables.</summary>
    public static float[] Rope(float[] v, int rows, int heads, int headSize, int start, float theta = 10000f)
    {
        var y = (float[])v.Clone();
        for (var r = 0; r < rows; r++)
            for (var h = 0; h < heads; h++)
                for (var j = 0; j < headSize / 2; j++)
                {
                    var angle = (start + r) * (1.0 / Math.Pow(theta, 2.0 * j / headSize));
                    var (s, c) = Math.SinCos(angle);
                    var at = (r * heads + h) * headSize + 2 * j;
                    var re = v[at];
                    var im = v[at + 1];
                    y[at] = (float)(re * c - im * s);
                    y[at + 1] = (float)(re * s + im * c);
                }
        return y;
    }

    public static void Softmax(Span<float> row)
    {
        var max = float.NegativeInfinity;
        foreach (var v in row) max = MathF.Max(max, v);
        var sum = 0.0;
        for (var i = 0; i < row.Length; i++)
        {
            row[i] = (float)Math.Exp(row[i] - max);
            sum += row[i];
        }
        for (var i = 0; i < row.Length; i++) row[i] = (float)(row[i] / sum);
    }

    /// <summary>
    /// Causal GQA: q [rows, heads, hs] at positions start..start+rows-1; keys/values [kvHeads, total, hs] hold positions 0..start+rows-1.
    /// Returns [rows, heads, hs].
    /// </summary>
    public static float[] Attention(float[] q, float[] keys, float[] values, int rows, int heads, int kvHeads, int hs, int start)
    {
        var total = start + rows;
        var group = heads / kvHeads;
        var output = new float[rows * heads * hs];
        for (var r = 0; r < rows; r++)
            for (var h = 0; h < heads; h++)
            {
                var kv = h / group;
                var length = start + r + 1;
                var scores = new float[length];
                for (var p = 0; p < length; p++)
                {
                    var dot = 0f;
                    for (var d = 0; d < hs; d++) dot += q[(r * heads + h) * hs + d] * keys[(kv * total + p) * hs + d];
                    scores[p] = dot / MathF.Sqrt(hs);
                }
                Softmax(scores);
                for (var d = 0; d < hs; d++)
                {
                    var sum = 0f;
                    for (var p = 0; p < length; p++) sum += scores[p] * values[(kv * total + p) * hs + d];
                    output[(r * heads + h) * hs + d] = sum;
                }
            }
        return output;
    }

    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    /// <summary>Weights of one block, matrices as MatMul B operands [in, out].</summary>
    public sealed record Block(float[] AttentionNorm, float[] Wq, float[] Wk, float[] Wv, float[] Wo, float[] FfnNorm, float[] W1, float[] W2, float[] W3);

    /// <summary>Per-layer KV history of one session, [kvHeads][positions][hs] grown per step.</summary>
    public sealed class Cache(int kvHeads, int hs)
    {
        public List<float[]>[] Keys { get; } = Enumerable.Range(0, kvHeads).Select(_ => new List<float[]>()).ToArray();
        public List<float[]>[] Values { get; } = Enumerable.Range(0, kvHeads).Select(_ => new List<float[]>()).ToArray();
        public int HeadSize => hs;

        public float[] Flatten(List<float[]>[] lists) => lists.SelectMany(l => l.SelectMany(v => v)).ToArray();
    }

    /// <summary>Runs x [rows, dim] through one block, appending to the cache; returns the new residual stream.</summary>
    public static float[] RunBlock(Block w, Cache cache, float[] x, int rows, int dim, int heads, int kvHeads, int hidden, float eps, int start)
    {
        var hs = dim / heads;
        var kvDim = kvHeads * hs;
        var h = RmsNorm(x, w.AttentionNorm, rows, dim, eps);
        var q = Rope(MatMul(h, w.Wq, rows, dim, dim), rows, heads, hs, start);
        var k = Rope(MatMul(h, w.Wk, rows, dim, kvDim), rows, kvHeads, hs, start);
        var v = MatMul(h, w.Wv, rows, dim, kvDim);
        for (var r = 0; r < rows; r++)
            for (var kh = 0; kh < kvHeads; kh++)
            {
                cache.Keys[kh].Add(k.AsSpan((r * kvHeads + kh) * hs, hs).ToArray());
                cache.Values[kh].Add(v.AsSpan((r * kvHeads + kh) * hs, hs).ToArray());
            }
        var attention = Attention(q, cache.Flatten(cache.Keys), cache.Flatten(cache.Values), rows, heads, kvHeads, hs, start);
        var o = MatMul(attention, w.Wo, rows, dim, dim);
        var x1 = x.Zip(o, (a, b) => a + b).ToArray();
        var h2 = RmsNorm(x1, w.FfnNorm, rows, dim, eps);
        var g = MatMul(h2, w.W1, rows, dim, hidden);
        var u = MatMul(h2, w.W3, rows, dim, hidden);
        for (var i = 0; i < g.Length; i++) g[i] = g[i] * (1f / (1f + MathF.Exp(-g[i]))) * u[i];
        var d = MatMul(g, w.W2, rows, hidden, dim);
        return x1.Zip(d, (a, b) => a + b).ToArray();
    }

    public static float[] Random(Random random, int count, float scale = 1f)
    {
        var values = new float[count];
        for (var i = 0; i < count; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new InvalidOperationException($"length {a.Length} vs {b.Length}");
        var max = 0f;
        for (var i = 0; i < a.Length; i++)
        {
            var d = MathF.Abs(a[i] - b[i]);
            if (float.IsNaN(d)) return float.NaN;
            max = MathF.Max(max, d);
        }
        return max;
    }
}
