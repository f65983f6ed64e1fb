using System.Buffers.Binary;
using System.Text.Json;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// An independent forward pass of a Hugging Face Llama/Mistral/Qwen2/Qwen3 checkpoint, written from transformers'
/// modeling code (rotate-half RoPE with Llama 3 frequency scaling, repeat_kv GQA, q/k RMSNorm, q/k/v biases) with
/// plain loops over the safetensors it reads itself. Shares no code with the importer, so it can catch its mistakes.
/// </summary>
public sealed class HuggingFaceReference
{
    private readonly Dictionary<string, float[]> _tensors;
    private readonly int _dim, _hidden, _layers, _heads, _kvHeads, _headDim, _vocab;
    private readonly double _eps;
    private readonly double[] _inverseFrequency;
    private readonly bool _tied;

    private HuggingFaceReference(string directory)
    {
        using var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(directory, "config.json")));
        var c = config.RootElement;
        _dim = c.GetProperty("hidden_size").GetInt32();
        _hidden = c.GetProperty("intermediate_size").GetInt32();
        _layers = c.GetProperty("num_hidden_layers").GetInt32();
        _heads = c.GetProperty("num_attention_heads").GetInt32();
        _kvHeads = c.GetProperty("num_key_value_heads").GetInt32();
        _headDim = c.TryGetProperty("head_dim", out var hd) ? hd.GetInt32() : _dim / _heads;
        _vocab = c.GetProperty("vocab_size").GetInt32();
        _eps = c.GetProperty("rms_norm_eps").GetDouble();
        _tied = c.GetProperty("tie_word_embeddings").GetBoolean();
        var theta = c.GetProperty("rope_theta").GetDouble();
        _inverseFrequency = Enumerable.Range(0, _headDim / 2).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / _headDim)).ToArray();
        if (c.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind == JsonValueKind.Object)
            _inverseFrequency = Llama3Scaling(_inverseFrequency, scaling);
        _tensors = ReadAll(directory);
    }

    public static HuggingFaceReference Load(string directory) => new(directory);

    /// <summary>Logits [position][vocab] of a causal forward pass over <paramref name="tokens"/> (positions 0..n−1).</summary>
    public float[][] Logits(IReadOnlyList<int> tokens)
    {
        var n = tokens.Count;
        var x = new float[n][];
        var embedding = _tensors["model.embed_tokens.weight"];
        for (var t = 0; t < n; t++) x[t] = embedding.AsSpan(tokens[t] * _dim, _dim).ToArray();
        for (var l = 0; l < _layers; l++)
        {
            var p = $"model.layers.{l}.";
            var q = new float[n][];
            var k = new float[n][];
            var v = new float[n][];
            for (var t = 0; t < n; t++)
            {
                var h = RmsNorm(x[t], _tensors[p + "input_layernorm.weight"]);
                q[t] = Linear(h, p + "self_attn.q_proj", _heads * _headDim);
                k[t] = Linear(h, p + "self_attn.k_proj", _kvHeads * _headDim);
                v[t] = Linear(h, p + "self_attn.v_proj", _kvHeads * _headDim);
                if (_tensors.TryGetValue(p + "self_attn.q_norm.weight", out var qNorm))
                {
                    HeadNorm(q[t], _heads, qNorm);
                    HeadNorm(k[t], _kvHeads, _tensors[p + "self_attn.k_norm.weight"]);
                }
                RotateHalf(q[t], _heads, t);
                RotateHalf(k[t], _kvHeads, t);
            }
            var group = _heads / _kvHeads;
            for (var t = 0; t < n; t++)
            {
                var attended = new float[_heads * _headDim];
                for (var head = 0; head < _heads; head++)
                {
                    var kvHead = head / group;
                    var scores = new double[t + 1];
                    for (var s = 0; s <= t; s++)
                    {
                        double dot = 0;
                        for (var d = 0; d < _headDim; d++) dot += q[t][head * _headDim + d] * k[s][kvHead * _headDim + d];
                        scores[s] = dot / Math.Sqrt(_headDim);
                    }
                    var max = scores.Max();
                    var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var sum = weights.Sum();
                    for (var d = 0; d < _headDim; d++)
                    {
                        double acc = 0;
                        for (var s = 0; s <= t; s++) acc += weights[s] / sum * v[s][kvHead * _headDim + d];
                        attended[head * _headDim + d] = (float)acc;
                    }
                }
                var output = Linear(attended, p + "self_attn.o_proj", _dim);
                for (var i = 0; i < _dim; i++) x[t][i] += output[i];
                var h2 = RmsNorm(x[t], _tensors[p + "post_attention_layernorm.weight"]);
                var gate = Linear(h2, p + "mlp.gate_proj", _hidden);
                var up = Linear(h2, p + "mlp.up_proj", _hidden);
                var act = new float[_hidden];
                for (var i = 0; i < _hidden; i++) act[i] = (float)(gate[i] / (1 + Math.Exp(-gate[i])) * up[i]);
                var down = Linear(act, p + "mlp.down_proj", _dim);
                for (var i = 0; i < _dim; i++) x[t][i] += down[i];
            }
        }
        var head2 = _tied ? _tensors["model.embed_tokens.weight"] : _tensors["lm_head.weight"];
        return x.Select(row =>
        {
            var normed = RmsNorm(row, _tensors["model.norm.weight"]);
            var logits = new float[_vocab];
            for (var o = 0; o < _vocab; o++)
            {
                double acc = 0;
                for (var i = 0; i < _dim; i++) acc += head2[o * _dim + i] * normed[i];
                logits[o] = (float)acc;
            }
            return logits;
        }).ToArray();
    }

    private float[] Linear(float[] x, string stem, int outFeatures)
    {
        var w = _tensors[stem + ".weight"];
        _tensors.TryGetValue(stem + ".bias", out var bias);
        var y = new float[outFeatures];
        for (var o = 0; o < outFeatures; o++)
        {
            double acc = bias?[o] ?? 0;
            for (var i = 0; i < x.Length; i++) acc += w[o * x.Length + i] * x[i];
            y[o] = (float)acc;
        }
        return y;
    }

    private float[] RmsNorm(float[] x, float[] weight)
    {
        var mean = x.Sum(v => (double)v * v) / x.Length;
        var scale = 1 / Math.Sqrt(mean + _eps);
        return x.Select((v, i) => (float)(v * scale * weight[i])).ToArray();
    }

    private void HeadNorm(float[] x, int heads, float[] weight)
    {
        for (var h = 0; h < heads; h++)
        {
            var normed = RmsNorm(x.AsSpan(h * _headDim, _headDim).ToArray(), weight);
            normed.CopyTo(x, h * _headDim);
        }
    }

    /// <summary>transformers' apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half(x) = (−x₂, x₁) over the two halves of each head.</summary>
    private void RotateHalf(float[] x, int heads, int position)
    {
        var half = _headDim / 2;
        for (var h = 0; h < heads; h++)
        {
            var o = h * _headDim;
            for (var i = 0; i < half; i++)
            {
                var angle = (float)(position * _inverseFrequency[i]);
                double cos = MathF.Cos(angle), sin = MathF.Sin(angle);
                var a = x[o + i];
                var b = x[o + half + i];
                x[o + i] = (float)(a * cos - b * sin);
                x[o + half + i] = (float)(b * cos + a * sin);
            }
        }
    }

    /// <summary>transformers' _compute_llama3_parameters.</summary>
    private static double[] Llama3Scaling(double[] inverseFrequency, JsonElement scaling)
    {
        var factor = scaling.GetProperty("factor").GetDouble();
        var low = scaling.GetProperty("low_freq_factor").GetDouble();
        var high = scaling.GetProperty("high_freq_factor").GetDouble();
        var original = scaling.GetProperty("original_max_position_embeddings").GetDouble();
        return inverseFrequency.Select(f =>
        {
            var wavelength = 2 * Math.PI / f;
            if (wavelength < original / high) return f;
            if (wavelength > original / low) return f / factor;
            var smooth = (original / wavelength - low) / (high - low);
            return (1 - smooth) * f / factor + smooth * f;
        }).ToArray();
    }

    private static Dictionary<string, float[]> ReadAll(string directory)
    {
        var index = Path.Combine(directory, "model.safetensors.index.json");
        IEnumerable<string> files = File.Exists(index)
            ? JsonDocument.Parse(File.ReadAllBytes(index)).RootElement.GetProperty("weight_map").EnumerateObject().Select(p => p.Value.GetString()!).Distinct()
            : ["model.safetensors"];
        var tensors = new Dictionary<string, float[]>();
        foreach (var file in files)
        {
            var bytes = File.ReadAllBytes(Path.Combine(directory, file));
            var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            using var header = JsonDocument.Parse(bytes.AsMemory(8, headerLength));
            foreach (var entry in header.RootElement.EnumerateObject().Where(e => e.Name != "__metadata__"))
            {
                var dtype = entry.Value.GetProperty("dtype").GetString();
                var begin = 8 + headerLength + entry.Value.GetProperty("data_offsets")[0].GetInt64();
                var end = 8 + headerLength + entry.Value.GetProperty("data_offsets")[1].GetInt64();
                var data = bytes.AsSpan((int)begin, (int)(end - begin));
                tensors[entry.Name] = dtype switch
                {
                    "F32" => Enumerable.Range(0, data.Length / 4).Select(i => BitConverter.ToSingle(bytes, (int)begin + i * 4)).ToArray(),
                    "F16" => Enumerable.Range(0, data.Length / 2).Select(i => (float)BitConverter.ToHalf(bytes, (int)begin + i * 2)).ToArray(),
                    "BF16" => Enumerable.Range(0, data.Length / 2).Select(i => BitConverter.Int32BitsToSingle(BitConverter.ToUInt16(bytes, (int)begin + i * 2) << 16)).ToArray(),
                    _ => throw new InvalidDataException($"dtype {dtype}"),
                };
            }
        }
        return tensors;
    }
}
