using System.Text.Json;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import.HuggingFace;

/// <summary>
/// A Hugging Face <c>config.json</c> of a supported decoder family, read into a <see cref="ModelConfig"/>. Anything
/// the graph would compute differently (another architecture, activation, rotary scaling, an output or MLP bias)
/// is refused by name rather than imported wrongly.
/// </summary>
/// <param name="Architecture">The <c>architectures[0]</c> entry, e.g. <c>Qwen2ForCausalLM</c>.</param>
/// <param name="TiedEmbeddings">The LM head shares the token embedding (<c>tie_word_embeddings</c>).</param>
public sealed record HuggingFaceConfig(string Architecture, ModelConfig Config, bool TiedEmbeddings)
{
    public const string FileName = "config.json";

    /// <summary>The architectures this importer converts.</summary>
    public static readonly IReadOnlyList<string> Supported = ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"];

    public static HuggingFaceConfig Read(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
            throw Invalid($"{directory} has no {FileName}: a Hugging Face model directory needs one");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw Invalid($"{path} is not JSON: {e.Message}");
        }
        using (document)
        {
            var root = document.RootElement;
            var architecture = root.TryGetProperty("architectures", out var list) && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() > 0
                ? list[0].GetString() ?? ""
                : throw Invalid($"{path} names no architecture (\"architectures\"); supported: {string.Join(", ", Supported)}");
            if (!Supported.Contains(architecture))
                throw Invalid($"architecture {architecture} is not supported; supported: {string.Join(", ", Supported)}");
            try
            {
                return Parse(root, architecture);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw Invalid($"{path} is not a usable {architecture} config: {e.Message}");
            }
        }
    }

    private static HuggingFaceConfig Parse(JsonElement root, string architecture)
    {
        int Int(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number
            ? v.GetInt32()
            : throw Invalid($"config.json has no \"{name}\"");
        int? OptionalInt(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;
        double Number(string name, double fallback) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        bool Flag(string name, bool fallback) => root.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;

        var activation = root.TryGetProperty("hidden_act", out var act) ? act.GetString() : "silu";
        if (activation != "silu")
            throw Invalid($"{architecture} with hidden_act {activation} is not supported; only silu (SwiGLU) is");
        if (Flag("mlp_bias", false))
            throw Invalid($"{architecture} with mlp_bias is not supported");

        var qwen2 = architecture == "Qwen2ForCausalLM";
        var attentionBias = Flag("attention_bias", false);
        if (attentionBias)
            throw Invalid($"{architecture} with attention_bias (a bias on the output projection too) is not supported");

        var heads = Int("num_attention_heads");
        var hidden = Int("hidden_size");
        var headDim = OptionalInt("head_dim");
        var maxPositions = Int("max_position_embeddings");
        var slidingWindow = OptionalInt("sliding_window");
        var windowed = architecture == "MistralForCausalLM" ? slidingWindow is not null : Flag("use_sliding_window", false);
        // Within the window, sliding-window attention is ordinary causal attention; capping the context there keeps the import exact.
        if (windowed && slidingWindow is { } window) maxPositions = Math.Min(maxPositions, window);

        var config = new ModelConfig(
            hidden, Int("intermediate_size"), Int("num_hidden_layers"), heads, OptionalInt("num_key_value_heads") ?? heads, Int("vocab_size"),
            maxPositions, (float)Number("rms_norm_eps", 1e-6), (float)Number("rope_theta", 10000),
            HeadDim: headDim is { } d && d != hidden / heads ? d : null,
            AttentionBias: qwen2,
            QkNorm: architecture == "Qwen3ForCausalLM",
            RopeScaling: ReadRopeScaling(root, architecture));
        LlamaWeights.Validate(config);
        return new HuggingFaceConfig(architecture, config, Flag("tie_word_embeddings", false));
    }

    private static RopeScaling? ReadRopeScaling(JsonElement root, string architecture)
    {
        if (!root.TryGetProperty("rope_scaling", out var scaling) || scaling.ValueKind == JsonValueKind.Null) return null;
        var type = scaling.TryGetProperty("rope_type", out var t) ? t.GetString() : scaling.TryGetProperty("type", out var legacy) ? legacy.GetString() : null;
        if (type == "default") return null;
        if (type != "llama3")
            throw Invalid($"{architecture} with rope_scaling type {type ?? "(none)"} is not supported; supported: llama3");
        double Get(string name) => scaling.TryGetProperty(name, out var v) ? v.GetDouble() : throw Invalid($"rope_scaling has no \"{name}\"");
        return new RopeScaling(Get("factor"), Get("low_freq_factor"), Get("high_freq_factor"), (int)Get("original_max_position_embeddings"));
    }

    private static MeshException Invalid(string message) => new(MeshErrorCode.InvalidCheckpoint, message);
}
