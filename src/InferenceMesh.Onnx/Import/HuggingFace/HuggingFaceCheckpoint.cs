using System.Text.Json;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import.HuggingFace;

/// <summary>
/// The weights of a Hugging Face decoder directory (<c>config.json</c> and <c>model.safetensors</c>, or shards listed in
/// <c>model.safetensors.index.json</c>) as an <see cref="ILlamaWeightSource"/>. Every tensor the graph needs is checked
/// for presence and shape when opened. Query and key rows are permuted from Hugging Face's rotate-half layout
/// (each head's first half pairs with its second half) back to interleaved pairs, the inverse of the permutation
/// <c>convert_llama_weights_to_hf.py</c> applies, so the graph's adjacent-pair rotation computes the same attention.
/// </summary>
public sealed class HuggingFaceCheckpoint : ILlamaWeightSource, IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _files;
    private readonly Dictionary<string, SafetensorsFile> _fileByTensor;

    private HuggingFaceCheckpoint(HuggingFaceConfig hf, Dictionary<string, SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileByTensor)
    {
        HfConfig = hf;
        _files = files;
        _fileByTensor = fileByTensor;
    }

    public HuggingFaceConfig HfConfig { get; }

    public ModelConfig Config => HfConfig.Config;

    /// <summary>Bytes of the largest tensor the graph stores, as float32 (what one conversion holds in memory).</summary>
    public long LargestTensorBytes { get; private set; }

    public static HuggingFaceCheckpoint Open(string directory)
    {
        if (!Directory.Exists(directory))
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"Hugging Face model directory {directory} does not exist");
        var hf = HuggingFaceConfig.Read(directory);
        var files = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var fileByTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, file) in TensorFiles(directory))
            {
                if (!files.TryGetValue(file, out var opened))
                    files[file] = opened = SafetensorsFile.Open(Path.Combine(directory, file));
                fileByTensor[tensor] = opened;
            }
            var checkpoint = new HuggingFaceCheckpoint(hf, files, fileByTensor);
            checkpoint.CheckTensors();
            return checkpoint;
        }
        catch
        {
            foreach (var file in files.Values) file.Dispose();
            throw;
        }
    }

    public bool Has(LlamaTensor tensor) => tensor switch
    {
        LlamaTensor.Classifier => !HfConfig.TiedEmbeddings,
        LlamaTensor.QueryBias or LlamaTensor.KeyBias or LlamaTensor.ValueBias => Config.AttentionBias,
        LlamaTensor.QueryNorm or LlamaTensor.KeyNorm => Config.QkNorm,
        _ => true,
    };

    public void ReadRows(LlamaTensor tensor, int layer, int startRow, int rowCount, Span<float> destination)
    {
        var name = TensorName(tensor, layer);
        var file = _fileByTensor[name];
        var info = file.Tensors[name];
        var columns = LlamaTensorShapes.Of(Config, tensor).Columns;
        switch (tensor)
        {
            case LlamaTensor.Query or LlamaTensor.Key:
                for (var r = 0; r < rowCount; r++)
                    file.ReadFloats(info, (long)InterleavedToRotateHalf(startRow + r, Config.HeadSize) * columns, columns, destination.Slice(r * columns, columns));
                break;
            case LlamaTensor.QueryBias or LlamaTensor.KeyBias or LlamaTensor.QueryNorm or LlamaTensor.KeyNorm:
                var stored = new float[columns];
                file.ReadFloats(info, 0, columns, stored);
                for (var i = 0; i < columns; i++) destination[i] = stored[InterleavedToRotateHalf(i, Config.HeadSize)];
                break;
            default:
                file.ReadFloats(info, (long)startRow * columns, rowCount * columns, destination);
                break;
        }
    }

    public void Dispose()
    {
        foreach (var file in _files.Values) file.Dispose();
    }

    /// <summary>The Hugging Face row holding interleaved row <paramref name="row"/>: element 2i+p of a head is element p·half+i there.</summary>
    private static int InterleavedToRotateHalf(int row, int headSize)
    {
        var (head, within) = Math.DivRem(row, headSize);
        var half = headSize / 2;
        return head * headSize + (within % 2) * half + within / 2;
    }

    private static string TensorName(LlamaTensor tensor, int layer)
    {
        var p = $"model.layers.{layer}.";
        return tensor switch
        {
            LlamaTensor.Embedding => "model.embed_tokens.weight",
            LlamaTensor.FinalNorm => "model.norm.weight",
            LlamaTensor.Classifier => "lm_head.weight",
            LlamaTensor.AttentionNorm => p + "input_layernorm.weight",
            LlamaTensor.Query => p + "self_attn.q_proj.weight",
            LlamaTensor.Key => p + "self_attn.k_proj.weight",
            LlamaTensor.Value => p + "self_attn.v_proj.weight",
            LlamaTensor.Output => p + "self_attn.o_proj.weight",
            LlamaTensor.QueryBias => p + "self_attn.q_proj.bias",
            LlamaTensor.KeyBias => p + "self_attn.k_proj.bias",
            LlamaTensor.ValueBias => p + "self_attn.v_proj.bias",
            LlamaTensor.QueryNorm => p + "self_attn.q_norm.weight",
            LlamaTensor.KeyNorm => p + "self_attn.k_norm.weight",
            LlamaTensor.FfnNorm => p + "post_attention_layernorm.weight",
            LlamaTensor.Gate => p + "mlp.gate_proj.weight",
            LlamaTensor.Up => p + "mlp.up_proj.weight",
            LlamaTensor.Down => p + "mlp.down_proj.weight",
            _ => throw new ArgumentOutOfRangeException(nameof(tensor), tensor, null),
        };
    }

    /// <summary>Every tensor the graph reads exists with the shape the config implies, in a dtype the reader converts.</summary>
    private void CheckTensors()
    {
        foreach (var tensor in Enum.GetValues<LlamaTensor>().Where(Has))
        {
            var perLayer = LlamaTensorShapes.PerLayer(tensor);
            for (var layer = 0; layer < (perLayer ? Config.Layers : 1); layer++)
            {
                var name = TensorName(tensor, layer);
                if (!_fileByTensor.TryGetValue(name, out var file) || !file.Tensors.TryGetValue(name, out var info))
                    throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"the checkpoint has no tensor {name}, which a {HfConfig.Architecture} with this config.json needs");
                var (rows, columns) = LlamaTensorShapes.Of(Config, tensor);
                long[] expected = rows == 1 ? [columns] : [rows, columns];
                if (!info.Shape.SequenceEqual(expected))
                    throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"tensor {name} in {Path.GetFileName(file.Path)} has shape [{string.Join(", ", info.Shape)}]; config.json implies [{string.Join(", ", expected)}]");
                SafetensorsFile.ElementSize(info.DType);
                LargestTensorBytes = Math.Max(LargestTensorBytes, (long)rows * columns * sizeof(float));
            }
        }
    }

    /// <summary>Each tensor name and the file (relative to the directory) that holds it.</summary>
    private static IEnumerable<(string Tensor, string File)> TensorFiles(string directory)
    {
        var indexPath = Path.Combine(directory, IndexFile);
        if (File.Exists(indexPath))
        {
            Dictionary<string, string> map;
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllBytes(indexPath));
                map = document.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"{indexPath} is not a safetensors index: {e.Message}");
            }
            foreach (var shard in map.Values.Distinct())
            {
                if (shard.Length == 0 || shard.Contains('/') || shard.Contains(".."))
                    throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"{indexPath} names shard '{shard}', which is not a file name in the directory");
                if (!File.Exists(Path.Combine(directory, shard)))
                    throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"shard {shard} is listed in {IndexFile} but absent from {directory}");
            }
            return map.Select(p => (p.Key, p.Value)).ToList();
        }
        if (!File.Exists(Path.Combine(directory, SingleFile)))
            throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"{directory} has neither {SingleFile} nor {IndexFile}; only safetensors weights are read");
        using var single = SafetensorsFile.Open(Path.Combine(directory, SingleFile));
        return single.Tensors.Keys.Select(t => (t, SingleFile)).ToList();
    }
}
