using System.Text.Json;
using InferenceMesh.Onnx.Import;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// Hugging Face model directories built by the tests, since no registry here ships real HF weights: stories260K
/// re-packed into HF layout (q/k rows permuted as transformers' <c>convert_llama_weights_to_hf.py</c> permutes Meta
/// weights), and seeded synthetic checkpoints of each supported family.
/// </summary>
public static class HuggingFaceFixtures
{
    /// <summary>The decoder families the synthetic checkpoints cover.</summary>
    public enum Family { Llama3, Mistral, Qwen2, Qwen3 }

    /// <summary>Writes stories260K as a Hugging Face <c>LlamaForCausalLM</c> directory, with tok512 as its <c>tokenizer.json</c>.</summary>
    /// <param name="tied">Whether the LM head is the embedding (<c>tie_word_embeddings</c>) or a separate <c>lm_head.weight</c> copy.</param>
    /// <param name="shards">1 for <c>model.safetensors</c>, more for shards with an index.</param>
    public static string Stories260K(string directory, bool tied, int shards = 1, string dtype = "F32")
    {
        Directory.CreateDirectory(directory);
        var w = Llama2cCheckpoint.Read(TestModels.Stories260KCheckpoint);
        var c = w.Config;
        var tensors = new List<SafetensorsWriter.Tensor> { new("model.embed_tokens.weight", [c.Vocab, c.Dim], w.TokenEmbedding) };
        for (var l = 0; l < c.Layers; l++)
        {
            var b = w.Blocks[l];
            var p = $"model.layers.{l}.";
            tensors.Add(new(p + "input_layernorm.weight", [c.Dim], b.AttentionNorm));
            tensors.Add(new(p + "self_attn.q_proj.weight", [c.Dim, c.Dim], PermuteToRotateHalf(b.Wq, c.Heads, c.HeadSize, c.Dim)));
            tensors.Add(new(p + "self_attn.k_proj.weight", [c.KvDim, c.Dim], PermuteToRotateHalf(b.Wk, c.KvHeads, c.HeadSize, c.Dim)));
            tensors.Add(new(p + "self_attn.v_proj.weight", [c.KvDim, c.Dim], b.Wv));
            tensors.Add(new(p + "self_attn.o_proj.weight", [c.Dim, c.Dim], b.Wo));
            tensors.Add(new(p + "post_attention_layernorm.weight", [c.Dim], b.FfnNorm));
            tensors.Add(new(p + "mlp.gate_proj.weight", [c.HiddenDim, c.Dim], b.W1));
            tensors.Add(new(p + "mlp.down_proj.weight", [c.Dim, c.HiddenDim], b.W2));
            tensors.Add(new(p + "mlp.up_proj.weight", [c.HiddenDim, c.Dim], b.W3));
        }
        tensors.Add(new("model.norm.weight", [c.Dim], w.FinalNorm));
        if (!tied) tensors.Add(new("lm_head.weight", [c.Vocab, c.Dim], (float[])w.TokenEmbedding.Clone()));
        WriteWeights(directory, tensors, dtype, shards);
        WriteTokenizer(directory);
        WriteConfig(directory, new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_size"] = c.Dim, ["intermediate_size"] = c.HiddenDim,
            ["num_hidden_layers"] = c.Layers, ["num_attention_heads"] = c.Heads, ["num_key_value_heads"] = c.KvHeads, ["vocab_size"] = c.Vocab,
            ["max_position_embeddings"] = c.MaxSequence, ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = tied, ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["torch_dtype"] = "float32",
        });
        return directory;
    }

    /// <summary>A seeded random checkpoint of <paramref name="family"/> with small, deliberately unequal dimensions.</summary>
    public static string Synthetic(string directory, Family family, string dtype, int seed = 11, int shards = 1, int layers = 2)
    {
        Directory.CreateDirectory(directory);
        var random = new Random(seed);
        const int dim = 64, hidden = 96, heads = 4, kvHeads = 2, vocab = 300;
        var headDim = family == Family.Qwen3 ? 24 : dim / heads;
        var tied = family is Family.Qwen2 or Family.Qwen3;
        float[] Uniform(long count, float scale) => Enumerable.Range(0, (int)count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        float[] Norm(int count) => Enumerable.Range(0, count).Select(_ => 1f + (float)(random.NextDouble() - 0.5) * 0.4f).ToArray();
        var tensors = new List<SafetensorsWriter.Tensor> { new("model.embed_tokens.weight", [vocab, dim], Uniform((long)vocab * dim, 1f)) };
        for (var l = 0; l < layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add(new(p + "input_layernorm.weight", [dim], Norm(dim)));
            tensors.Add(new(p + "self_attn.q_proj.weight", [heads * headDim, dim], Uniform(heads * headDim * dim, 0.25f)));
            tensors.Add(new(p + "self_attn.k_proj.weight", [kvHeads * headDim, dim], Uniform(kvHeads * headDim * dim, 0.25f)));
            tensors.Add(new(p + "self_attn.v_proj.weight", [kvHeads * headDim, dim], Uniform(kvHeads * headDim * dim, 0.25f)));
            tensors.Add(new(p + "self_attn.o_proj.weight", [dim, heads * headDim], Uniform(dim * heads * headDim, 0.1f)));
            if (family == Family.Qwen2)
            {
                tensors.Add(new(p + "self_attn.q_proj.bias", [heads * headDim], Uniform(heads * headDim, 0.5f)));
                tensors.Add(new(p + "self_attn.k_proj.bias", [kvHeads * headDim], Uniform(kvHeads * headDim, 0.5f)));
                tensors.Add(new(p + "self_attn.v_proj.bias", [kvHeads * headDim], Uniform(kvHeads * headDim, 0.5f)));
            }
            if (family == Family.Qwen3)
            {
                tensors.Add(new(p + "self_attn.q_norm.weight", [headDim], Norm(headDim)));
                tensors.Add(new(p + "self_attn.k_norm.weight", [headDim], Norm(headDim)));
            }
            tensors.Add(new(p + "post_attention_layernorm.weight", [dim], Norm(dim)));
            tensors.Add(new(p + "mlp.gate_proj.weight", [hidden, dim], Uniform(hidden * dim, 0.2f)));
            tensors.Add(new(p + "mlp.up_proj.weight", [hidden, dim], Uniform(hidden * dim, 0.2f)));
            tensors.Add(new(p + "mlp.down_proj.weight", [dim, hidden], Uniform(dim * hidden, 0.1f)));
        }
        tensors.Add(new("model.norm.weight", [dim], Norm(dim)));
        if (!tied) tensors.Add(new("lm_head.weight", [vocab, dim], Uniform((long)vocab * dim, 0.2f)));
        WriteWeights(directory, tensors, dtype, shards);

        var config = new Dictionary<string, object?>
        {
            ["hidden_size"] = dim, ["intermediate_size"] = hidden, ["num_hidden_layers"] = layers, ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads, ["vocab_size"] = vocab, ["max_position_embeddings"] = 128, ["rms_norm_eps"] = 1e-6,
            ["hidden_act"] = "silu", ["tie_word_embeddings"] = tied, ["torch_dtype"] = dtype switch { "BF16" => "bfloat16", "F16" => "float16", _ => "float32" },
        };
        switch (family)
        {
            case Family.Llama3:
                config["architectures"] = new[] { "LlamaForCausalLM" };
                config["rope_theta"] = 500000.0;
                config["rope_scaling"] = new Dictionary<string, object> { ["rope_type"] = "llama3", ["factor"] = 8.0, ["low_freq_factor"] = 1.0, ["high_freq_factor"] = 4.0, ["original_max_position_embeddings"] = 32 };
                config["attention_bias"] = false;
                break;
            case Family.Mistral:
                config["architectures"] = new[] { "MistralForCausalLM" };
                config["rope_theta"] = 1000000.0;
                config["sliding_window"] = 4096;
                break;
            case Family.Qwen2:
                config["architectures"] = new[] { "Qwen2ForCausalLM" };
                config["rope_theta"] = 1000000.0;
                config["use_sliding_window"] = false;
                config["sliding_window"] = 32;
                break;
            case Family.Qwen3:
                config["architectures"] = new[] { "Qwen3ForCausalLM" };
                config["rope_theta"] = 1000000.0;
                config["head_dim"] = headDim;
                config["attention_bias"] = false;
                break;
        }
        WriteConfig(directory, config);
        return directory;
    }

    /// <summary>
    /// A Llama checkpoint of <paramref name="layers"/> blocks generated block by block as BF16 (a cheap hash fills the weights),
    /// for checks of models larger than memory or protobuf allows. Returns the float32 size of its weights in bytes.
    /// </summary>
    public static long Large(string directory, int layers, int dim, int hidden, int heads, int kvHeads, int vocab, int shards)
    {
        Directory.CreateDirectory(directory);
        var headDim = dim / heads;
        var seed = 0u;
        float[] Fill(long count, float scale, float offset = 0)
        {
            var values = new float[count];
            var state = ++seed * 2654435761u;
            for (long i = 0; i < count; i++)
            {
                state ^= state << 13; state ^= state >> 17; state ^= state << 5;
                values[i] = offset + (state / (float)uint.MaxValue * 2 - 1) * scale;
            }
            return values;
        }
        var tensors = new List<SafetensorsWriter.Tensor> { new("model.embed_tokens.weight", [vocab, dim], () => Fill((long)vocab * dim, 1f)) };
        for (var l = 0; l < layers; l++)
        {
            var p = $"model.layers.{l}.";
            tensors.Add(new(p + "input_layernorm.weight", [dim], () => Fill(dim, 0.1f, 1f)));
            tensors.Add(new(p + "self_attn.q_proj.weight", [dim, dim], () => Fill((long)dim * dim, 1f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "self_attn.k_proj.weight", [kvHeads * headDim, dim], () => Fill((long)kvHeads * headDim * dim, 1f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "self_attn.v_proj.weight", [kvHeads * headDim, dim], () => Fill((long)kvHeads * headDim * dim, 1f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "self_attn.o_proj.weight", [dim, dim], () => Fill((long)dim * dim, 0.5f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "post_attention_layernorm.weight", [dim], () => Fill(dim, 0.1f, 1f)));
            tensors.Add(new(p + "mlp.gate_proj.weight", [hidden, dim], () => Fill((long)hidden * dim, 1f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "mlp.up_proj.weight", [hidden, dim], () => Fill((long)hidden * dim, 1f / MathF.Sqrt(dim))));
            tensors.Add(new(p + "mlp.down_proj.weight", [dim, hidden], () => Fill((long)dim * hidden, 0.5f / MathF.Sqrt(hidden))));
        }
        tensors.Add(new("model.norm.weight", [dim], () => Fill(dim, 0.1f, 1f)));
        WriteWeights(directory, tensors, "BF16", shards);
        WriteConfig(directory, new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["hidden_size"] = dim, ["intermediate_size"] = hidden, ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads, ["num_key_value_heads"] = kvHeads, ["vocab_size"] = vocab, ["max_position_embeddings"] = 256,
            ["rms_norm_eps"] = 1e-5, ["rope_theta"] = 10000.0, ["hidden_act"] = "silu", ["tie_word_embeddings"] = true, ["torch_dtype"] = "bfloat16",
        });
        return tensors.Sum(t => t.Elements) * sizeof(float);
    }

    /// <summary>Writes stories260K's tok512 as a Hugging Face <c>tokenizer.json</c> (with its config) into <paramref name="directory"/>.</summary>
    public static void WriteTokenizer(string directory) => HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory);

    public static void WriteConfig(string directory, IReadOnlyDictionary<string, object?> config) =>
        File.WriteAllText(Path.Combine(directory, "config.json"), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));

    /// <summary>Meta's interleaved rotary pairs → Hugging Face's rotate-half order: HF row (head, p·half + i) is Meta row (head, 2i + p).</summary>
    public static float[] PermuteToRotateHalf(float[] meta, int heads, int headSize, int columns)
    {
        var hf = new float[meta.Length];
        var half = headSize / 2;
        for (var h = 0; h < heads; h++)
            for (var i = 0; i < half; i++)
                for (var p = 0; p < 2; p++)
                    Array.Copy(meta, ((long)h * headSize + 2 * i + p) * columns, hf, ((long)h * headSize + p * half + i) * columns, columns);
        return hf;
    }

    private static void WriteWeights(string directory, List<SafetensorsWriter.Tensor> tensors, string dtype, int shards)
    {
        if (shards == 1) SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors, dtype);
        else SafetensorsWriter.WriteSharded(directory, tensors, dtype, shards);
    }
}
