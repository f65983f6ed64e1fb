using System.Text.Json.Nodes;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Split;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>
/// A model directory an exporter wrote (torch.onnx.export, Optimum, the ONNX Runtime GenAI builder) rather than our
/// importer: the graph may have any <c>.onnx</c> name, and the numbers serving needs (<see cref="ModelConfig"/>) come
/// from <c>genai_config.json</c>, else a Hugging Face <c>config.json</c>, else the graph itself (widths, KV heads,
/// head size, blocks). Values not found anywhere are marked in <see cref="ModelDescription.Source"/>.
/// </summary>
public static class ForeignModel
{
    /// <summary>The ONNX Runtime GenAI builder's description of a model.</summary>
    public const string GenAiConfigFile = "genai_config.json";

    /// <summary>Hugging Face's description of a model, which Optimum exports keep beside the graph.</summary>
    public const string HuggingFaceConfigFile = "config.json";

    /// <summary>The context assumed when neither description file gives one (the GenAI builder's own default).</summary>
    public const int DefaultContext = 2048;

    /// <summary>Description files carried into a split directory, where the client reads EOS ids from them.</summary>
    public static readonly IReadOnlyList<string> DescriptionFiles = [GenAiConfigFile, HuggingFaceConfigFile];

    /// <summary>
    /// The graph file of a model directory: the one <c>genai_config.json</c> names, else <c>model.onnx</c>, else the
    /// directory's only <c>.onnx</c> file.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when there is none, or several and nothing says which.</exception>
    public static string FindModelFile(string directory)
    {
        if (!Directory.Exists(directory))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"model directory {directory} does not exist");
        if (ReadJson(directory, GenAiConfigFile)?["model"]?["decoder"]?["filename"]?.GetValue<string>() is { } named && File.Exists(Path.Combine(directory, named)))
            return Path.Combine(directory, named);
        var standard = Path.Combine(directory, ModelStore.ModelFile);
        if (File.Exists(standard)) return standard;
        var graphs = Directory.GetFiles(directory, "*.onnx").Order(StringComparer.Ordinal).ToList();
        return graphs.Count switch
        {
            1 => graphs[0],
            0 => throw new MeshException(MeshErrorCode.InvalidArgument, $"{directory} holds no .onnx file"),
            _ => throw new MeshException(MeshErrorCode.InvalidArgument,
                $"{directory} holds {graphs.Count} .onnx files ({string.Join(", ", graphs.Select(Path.GetFileName))}); name the graph to split"),
        };
    }

    /// <summary>
    /// Describes a foreign export from the description files beside it, filling what they lack from the graph: the layer
    /// count is always the splitter's block count; KV heads and head size come from a past input's declared dims.
    /// Null when neither the files nor the graph give the hidden size.
    /// </summary>
    public static ModelDescription? TryDescribe(string directory, GraphAnalysis analysis, string modelPath)
    {
        var genAi = ReadJson(directory, GenAiConfigFile)?["model"];
        var decoder = genAi?["decoder"];
        var hf = ReadJson(directory, HuggingFaceConfigFile);
        int? Number(params string[] names)
        {
            foreach (var source in new[] { decoder, genAi, hf })
                foreach (var name in names)
                    if (source?[name] is JsonValue value && value.TryGetValue<int>(out var number)) return number;
            return null;
        }
        double? Real(params string[] names)
        {
            foreach (var name in names)
                if (hf?[name] is JsonValue value && value.TryGetValue<double>(out var number)) return number;
            return null;
        }

        var graph = analysis.Model.Graph;
        var finalWidth = LastDim(analysis.ValueInfoFor(analysis.FinalOutput));
        var boundaryWidth = analysis.BoundaryTensors.Count > 1 ? LastDim(analysis.ValueInfoFor(analysis.BoundaryTensors[1][0])) : null;
        var past = analysis.PastOf.Values.Select(analysis.ValueInfoFor).FirstOrDefault()?.Type.TensorType.Shape?.Dim;
        // Separate KV is [batch, heads, past, head size]; stacked KV puts K and V first: [2, batch, heads, past, head size].
        long? pastHeads = past is { Count: >= 4 } ? DimValue(past[^3]) : null;
        long? pastHeadSize = past is { Count: >= 4 } ? DimValue(past[^1]) : null;

        // Exports rarely declare inner shapes; the token embedding table ([vocab, hidden], gathered by the token ids) gives the width then.
        var embeddingWidth = graph.Node.Where(n => n.OpType == "Gather" && n.Input.Count == 2 && n.Input[1] == analysis.TokenInput)
            .Select(n => graph.Initializer.FirstOrDefault(t => t.Name == n.Input[0]))
            .Where(t => t is { Dims.Count: 2 }).Select(t => (long?)t!.Dims[1]).FirstOrDefault();
        if ((Number("hidden_size", "n_embd", "d_model") ?? (int?)boundaryWidth ?? (int?)embeddingWidth ?? (int?)finalWidth) is not { } dim) return null;
        var kvHeads = Number("num_key_value_heads") ?? (int?)pastHeads ?? Number("num_attention_heads", "n_head") ?? 1;
        var heads = Number("num_attention_heads", "n_head") ?? kvHeads;
        var headSize = Number("head_size", "head_dim") ?? (int?)pastHeadSize;
        var vocab = Number("vocab_size") ?? (int?)finalWidth ?? 0;
        var context = Number("context_length", "max_position_embeddings", "n_positions", "n_ctx");
        var config = new ModelConfig(dim, Number("intermediate_size", "n_inner") ?? 0, analysis.BlockCount, heads, kvHeads, vocab, context ?? DefaultContext,
            (float)(Real("rms_norm_eps", "layer_norm_epsilon") ?? 1e-5), (float)(Real("rope_theta") ?? 10000), headSize);
        var from = genAi is not null ? GenAiConfigFile : hf is not null ? HuggingFaceConfigFile : "the graph";
        var source = $"{Path.GetFileName(modelPath)} ({graph.Name}), described by {from}{(context is null ? $"; context {DefaultContext} assumed" : "")}";
        var name = Path.GetFileName(Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar));
        return new ModelDescription(name, config, source, Manifest.Sha256Hex(modelPath), "");
    }

    /// <summary>The ids that end a generation as the description files give them (<c>eos_token_id</c>, a number or a list); empty when none does.</summary>
    public static IReadOnlySet<int> EndOfTextIds(string directory)
    {
        var ids = new HashSet<int>();
        foreach (var node in new[] { ReadJson(directory, GenAiConfigFile)?["model"], ReadJson(directory, HuggingFaceConfigFile), ReadJson(directory, "generation_config.json") })
        {
            switch (node?["eos_token_id"])
            {
                case JsonValue value when value.TryGetValue<int>(out var id):
                    ids.Add(id);
                    break;
                case JsonArray list:
                    foreach (var item in list)
                        if (item is JsonValue v && v.TryGetValue<int>(out var each)) ids.Add(each);
                    break;
            }
            if (ids.Count > 0) break;
        }
        return ids;
    }

    private static JsonNode? ReadJson(string directory, string file)
    {
        var path = Path.Combine(directory, file);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonNode.Parse(File.ReadAllBytes(path));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new MeshException(MeshErrorCode.InvalidManifest, $"{path} is not valid JSON: {e.Message}", e);
        }
    }

    private static long? LastDim(ValueInfoProto info) => info.Type.TensorType.Shape?.Dim is { Count: > 0 } dims ? DimValue(dims[^1]) : null;

    private static long? DimValue(TensorShapeProto.Types.Dimension dim) =>
        dim.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? dim.DimValue : null;
}
