using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace InferenceMesh.Core;

/// <summary>
/// The split model: every stage file with its sha256, I/O and block range. <see cref="ModelId"/> is the
/// sha256 (hex) of <see cref="CanonicalBytes"/>, so two peers with the same id run byte-identical stages.
/// </summary>
/// <param name="Quantization">The lossy weight quantization the model was imported with (e.g. <c>int4 block 32 MatMulNBits accuracy 4</c>);
/// null for exact weights, and then left out of the canonical bytes so exact models keep their ids.</param>
public sealed record Manifest(
    int FormatVersion,
    string Name,
    int BlockCount,
    ModelConfig? Config,
    string SourceModelSha256,
    string? TokenizerFile,
    IReadOnlyList<StageDescriptor> Stages,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Quantization = null)
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

    /// <summary>
    /// Computed once per instance (a <c>with</c> copy is another instance and hashes its own bytes): servers and clients read it on
    /// every step's commitment, where serializing and hashing the manifest each time cost a tenth of a node's CPU.
    /// </summary>
    [JsonIgnore] public string ModelId => ModelIds.GetValue(this, static m => Convert.ToHexStringLower(SHA256.HashData(m.CanonicalBytes())));

    private static readonly ConditionalWeakTable<Manifest, string> ModelIds = new();

    [JsonIgnore] public StageDescriptor Head => Stages.Single(s => s.Kind == StageKind.Head);
    [JsonIgnore] public StageDescriptor Tail => Stages.Single(s => s.Kind == StageKind.Tail);
    [JsonIgnore] public IEnumerable<StageDescriptor> BlockStages => Stages.Where(s => s.Kind == StageKind.Blocks);

    /// <summary>
    /// The most positions one step may carry through this model: the numeric last dim of the head's token input, else
    /// <see cref="int.MaxValue"/>. An export traced with one token (torch.onnx.export's GPT-2 declares <c>input_ids [batch, 1]</c>)
    /// gives wrong activations, not an error, when its blocks are fed more, so every step, replay and check is cut to this length.
    /// </summary>
    [JsonIgnore] public int MaxStepPositions => MaxStepPositionsOf(Head);

    /// <summary><see cref="MaxStepPositions"/> of a model whose head is <paramref name="head"/>.</summary>
    public static int MaxStepPositionsOf(StageDescriptor head)
    {
        var dims = head.Inputs.FirstOrDefault(i => i.Name == head.ActivationInput)?.Shape;
        return dims is { Count: > 0 } && int.TryParse(dims[^1], out var fixedLength) && fixedLength > 0 ? fixedLength : int.MaxValue;
    }

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
                VerifyFile(directory, stage.File, stage.Sha256);
                if (stage.DataFile is not null)
                    VerifyFile(directory, stage.DataFile, stage.DataSha256 ?? "");
            }
        }
        return manifest;
    }

    private static void VerifyFile(string directory, string name, string expected)
    {
        var file = Path.Combine(directory, name);
        if (!File.Exists(file))
            throw new MeshException(MeshErrorCode.InvalidManifest, $"stage file {name} is missing from {directory}");
        var actual = Sha256Hex(file);
        if (actual != expected)
            throw new MeshException(MeshErrorCode.IntegrityMismatch, $"stage file {name} has sha256 {actual}, manifest says {expected}");
    }

    public static string Sha256Hex(string file)
    {
        using var stream = File.OpenRead(file);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private sealed record ManifestFile(string ModelId, Manifest Manifest);
}
