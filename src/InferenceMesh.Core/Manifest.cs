using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace InferenceMesh.Core;

/// <summary>What a stage computes: the client-side embedding, a range of blocks, the client-side final norm and LM head, or the whole unsplit model.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<StageKind>))]
public enum StageKind { Head, Blocks, Tail, Whole }

/// <summary>A named graph input or output. Dimensions are numbers, or symbolic names such as <c>batch</c>.</summary>
public sealed record TensorInfo(string Name, DType Type, IReadOnlyList<string> Shape);

/// <summary>One KV-cache tensor of a stage: fed back as <see cref="Past"/> from the <see cref="Present"/> of the previous step.</summary>
public sealed record StateBinding(string Past, string Present);

/// <summary>One standalone ONNX graph cut from the model.</summary>
/// <param name="ActivationInput">The residual-stream input (token ids for the head).</param>
/// <param name="ActivationOutput">The residual-stream output (logits for the tail).</param>
/// <param name="ContextInputs">Inputs every stage recomputes its side tensors from (positions, mask); never activations.</param>
public sealed record StageDescriptor(
    StageKind Kind,
    BlockRange? Blocks,
    string File,
    string Sha256,
    string ActivationInput,
    string ActivationOutput,
    IReadOnlyList<TensorInfo> Inputs,
    IReadOnlyList<TensorInfo> Outputs,
    IReadOnlyList<string> ContextInputs,
    IReadOnlyList<StateBinding> State);

/// <summary>The architecture numbers of a Llama-family decoder.</summary>
public sealed record ModelConfig(
    int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int Vocab, int MaxSequence, float NormEpsilon, float RopeTheta)
{
    [JsonIgnore] public int HeadSize => Dim / Heads;
    [JsonIgnore] public int KvDim => HeadSize * KvHeads;
}

/// <summary>
/// The split model: every stage file with its sha256, I/O and block range. <see cref="ModelId"/> is the
/// sha256 (hex) of <see cref="CanonicalBytes"/>, so two peers with the same id run byte-identical stages.
/// </summary>
public sealed record Manifest(
    int FormatVersion,
    string Name,
    int BlockCount,
    ModelConfig? Config,
    string SourceModelSha256,
    string? TokenizerFile,
    IReadOnlyList<StageDescriptor> Stages)
{
    public const string FileName = "manifest.json";

    private static readonly JsonSerializerOptions CanonicalOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        Converters = { new JsonStringEnumConverter<DType>() },
    };

    private static readonly JsonSerializerOptions FileOptions = new(CanonicalOptions) { WriteIndented = true };

    /// <summary>The manifest serialized compactly in declaration order: the bytes <see cref="ModelId"/> hashes.</summary>
    public byte[] CanonicalBytes() => JsonSerializer.SerializeToUtf8Bytes(this, CanonicalOptions);

    [JsonIgnore] public string ModelId => Convert.ToHexStringLower(SHA256.HashData(CanonicalBytes()));

    [JsonIgnore] public StageDescriptor Head => Stages.Single(s => s.Kind == StageKind.Head);
    [JsonIgnore] public StageDescriptor Tail => Stages.Single(s => s.Kind == StageKind.Tail);
    [JsonIgnore] public IEnumerable<StageDescriptor> BlockStages => Stages.Where(s => s.Kind == StageKind.Blocks);

    public void Save(string directory)
    {
        var document = new ManifestFile(ModelId, this);
        File.WriteAllBytes(Path.Combine(directory, FileName), JsonSerializer.SerializeToUtf8Bytes(document, FileOptions));
    }

    /// <summary>Reads <c>manifest.json</c> and checks its model id and, when <paramref name="verifyFiles"/>, every stage file's sha256.</summary>
    public static Manifest Load(string directory, bool verifyFiles = true)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidManifest, $"no {FileName} in {directory}");
        ManifestFile? document;
        try
        {
            document = JsonSerializer.Deserialize<ManifestFile>(File.ReadAllBytes(path), FileOptions);
        }
        catch (JsonException e)
        {
            throw new MeshException(MeshErrorCode.InvalidManifest, $"{path} is not a valid manifest: {e.Message}", e);
        }
        if (document?.Manifest is null || document.Manifest.Stages is null)
            throw new MeshException(MeshErrorCode.InvalidManifest, $"{path} has no manifest");
        var manifest = document.Manifest;
        if (manifest.ModelId != document.ModelId)
            throw new MeshException(MeshErrorCode.IntegrityMismatch, $"{path}: modelId {document.ModelId} does not match its content ({manifest.ModelId})");
        if (verifyFiles)
        {
            foreach (var stage in manifest.Stages)
            {
                var file = Path.Combine(directory, stage.File);
                if (!File.Exists(file))
                    throw new MeshException(MeshErrorCode.InvalidManifest, $"stage file {stage.File} is missing from {directory}");
                var actual = Sha256Hex(file);
                if (actual != stage.Sha256)
                    throw new MeshException(MeshErrorCode.IntegrityMismatch, $"stage file {stage.File} has sha256 {actual}, manifest says {stage.Sha256}");
            }
        }
        return manifest;
    }

    public static string Sha256Hex(string file)
    {
        using var stream = File.OpenRead(file);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private sealed record ManifestFile(string ModelId, Manifest Manifest);
}
