using System.Text;
using System.Text.Json;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Import.HuggingFace;
using InferenceMesh.Onnx.Quantization;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Onnx.Tokenizer;

namespace InferenceMesh.Onnx;

/// <summary>
/// The on-disk layout of models: an imported model directory holds <c>model.onnx</c>, <c>tokenizer.bin</c>
/// and <c>model.json</c>; a split directory holds the stage files, <c>manifest.json</c> and the tokenizer.
/// </summary>
public static class ModelStore
{
    public const string ModelFile = "model.onnx";
    public const string TokenizerFile = "tokenizer.bin";
    public const string DescriptionFile = "model.json";

    /// <summary>The external-data file beside <see cref="ModelFile"/> (weights outside the protobuf).</summary>
    public const string ModelDataFile = "model.onnx.data";

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Imports a llama2.c checkpoint and tokenizer; refuses a tokenizer whose vocabulary differs from the model's.</summary>
    /// <param name="quantization">Block-quantized projection matrices (lossy, recorded in <c>model.json</c> and the manifest); null: exact.</param>
    public static ModelDescription ImportLlama2c(string checkpoint, string tokenizer, string outDir, QuantizationOptions? quantization = null)
    {
        var weights = Llama2cCheckpoint.Read(checkpoint);
        Llama2cTokenizer.Load(tokenizer, weights.Config.Vocab);
        var name = Path.GetFileNameWithoutExtension(checkpoint) + Suffix(quantization);
        Directory.CreateDirectory(outDir);
        OnnxModelFile.Save(LlamaOnnxBuilder.Build(weights, name, new LlamaBuildOptions(Quantization: quantization)), Path.Combine(outDir, ModelFile));
        File.Copy(tokenizer, Path.Combine(outDir, TokenizerFile), overwrite: true);
        var description = new ModelDescription(name, weights.Config, Path.GetFileName(checkpoint), Manifest.Sha256Hex(checkpoint), TokenizerFile,
            quantization?.Describe());
        WriteDescription(outDir, description);
        return description;
    }

    /// <summary>
    /// Imports a Hugging Face decoder directory (see <see cref="HuggingFaceCheckpoint"/>): the graph in <c>model.onnx</c>,
    /// its weights in <c>model.onnx.data</c> (external data, so models past protobuf's 2 GiB work), the tokenizer files and
    /// <c>model.json</c>. Everything is written to a scratch directory beside <paramref name="outDir"/> and moved in only
    /// when complete, so a failed import leaves <paramref name="outDir"/> as it was.
    /// </summary>
    /// <param name="weightType">Float32, or Float16 for half-size weights.</param>
    /// <param name="quantization">Block-quantized projection matrices (lossy, recorded in <c>model.json</c> and the manifest); null: exact.</param>
    public static HuggingFaceImport ImportHuggingFace(string sourceDir, string outDir, DType weightType = DType.Float32, QuantizationOptions? quantization = null)
    {
        using var checkpoint = HuggingFaceCheckpoint.Open(sourceDir);
        // Refuse an unusable tokenizer before anything is written, as an unusable checkpoint is.
        if (File.Exists(Path.Combine(sourceDir, HfTokenizer.TokenizerFile)))
            (TokenizerLoader.Load(sourceDir, checkpoint.Config.Vocab) as IDisposable)?.Dispose();
        var fullOut = Path.GetFullPath(outDir);
        var parent = Path.GetDirectoryName(fullOut)!;
        Directory.CreateDirectory(parent);
        var scratch = Path.Combine(parent, $".{Path.GetFileName(fullOut)}.partial-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        try
        {
            var name = Path.GetFileName(Path.GetFullPath(sourceDir).TrimEnd(Path.DirectorySeparatorChar)) + Suffix(quantization);
            using (var data = new ExternalDataWriter(Path.Combine(scratch, ModelDataFile), ModelDataFile))
                OnnxModelFile.Save(LlamaOnnxBuilder.Build(checkpoint, name, new LlamaBuildOptions(data, weightType, quantization)), Path.Combine(scratch, ModelFile));
            var tokenizer = CopyTokenizerFiles(sourceDir, scratch, null);
            var description = new ModelDescription(name, checkpoint.Config, $"{checkpoint.HfConfig.Architecture} {Path.GetFullPath(sourceDir)}",
                Manifest.Sha256Hex(Path.Combine(sourceDir, HuggingFaceConfig.FileName)), tokenizer ?? "", quantization?.Describe());
            WriteDescription(scratch, description);
            Directory.CreateDirectory(fullOut);
            foreach (var file in Directory.GetFiles(scratch))
                File.Move(file, Path.Combine(fullOut, Path.GetFileName(file)), overwrite: true);
            return new HuggingFaceImport(description, checkpoint.HfConfig.Architecture, checkpoint.LargestTensorBytes,
                new FileInfo(Path.Combine(fullOut, ModelDataFile)).Length);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
    }

    /// <summary>Writes a seeded random model of the given architecture with a synthetic tokenizer of <c>config.Vocab</c> pieces.</summary>
    /// <param name="quantization">Block-quantized projection matrices (lossy, recorded in <c>model.json</c> and the manifest); null: exact.</param>
    public static ModelDescription Synthesize(ModelConfig config, int seed, string outDir, QuantizationOptions? quantization = null)
    {
        if (config.Vocab < 259)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"vocab {config.Vocab} is too small: the tokenizer needs 3 special and 256 byte pieces");
        var weights = LlamaWeights.Synthetic(config, seed);
        var name = $"synthetic-d{config.Dim}-l{config.Layers}-s{seed}" + Suffix(quantization);
        Directory.CreateDirectory(outDir);
        OnnxModelFile.Save(LlamaOnnxBuilder.Build(weights, name, new LlamaBuildOptions(Quantization: quantization)), Path.Combine(outDir, ModelFile));
        WriteSyntheticTokenizer(Path.Combine(outDir, TokenizerFile), config.Vocab);
        var description = new ModelDescription(name, config, $"synthetic seed {seed}", "", TokenizerFile, quantization?.Describe());
        WriteDescription(outDir, description);
        return description;
    }

    /// <summary>Splits <paramref name="modelPath"/> into Head, one stage per range and Tail under <paramref name="outDir"/>, with <c>manifest.json</c>.</summary>
    /// <param name="tokenInput">The graph input holding token ids; null: <c>input_ids</c>, else found from the graph.</param>
    /// <param name="finalOutput">The graph output holding logits or the final state; null: <c>logits</c>, else found from the graph.</param>
    /// <param name="modelPath">The graph file, or a model directory (its graph found by <see cref="ForeignModel.FindModelFile"/>).</param>
    /// <param name="unfuseSkipNorms">Rewrite fused skip-norms at layer boundaries into their standard form so only the residual
    /// stream crosses (half the bytes per position of a fused export, no slower; see <see cref="GraphAnalysis.UnfusedSkipNorms"/>);
    /// false keeps the graph's nodes as they are and carries both tensors.</param>
    public static Manifest Split(string modelPath, Func<int, IReadOnlyList<BlockRange>> ranges, string outDir, string? tokenInput = null, string? finalOutput = null,
        bool unfuseSkipNorms = true)
    {
        if (Directory.Exists(modelPath)) modelPath = ForeignModel.FindModelFile(modelPath);
        var model = OnnxModelFile.Load(modelPath);
        var analysis = new GraphAnalysis(model, tokenInput, finalOutput, unfuseSkipNorms);
        var stages = GraphSplitter.Split(model, analysis, ranges(analysis.BlockCount));
        Directory.CreateDirectory(outDir);
        var descriptors = new List<StageDescriptor>();
        var sourceDir = Path.GetDirectoryName(Path.GetFullPath(modelPath))!;
        foreach (var stage in stages)
        {
            var path = Path.Combine(outDir, stage.Descriptor.File);
            // Each stage gets a data file of its own holding only the weights it reads, so a stage directory is self-contained.
            var dataFile = stage.Descriptor.File + ".data";
            var dataPath = Path.Combine(outDir, dataFile);
            var external = OnnxExternalData.Relocate(stage.Model, sourceDir, dataPath, dataFile);
            OnnxModelFile.Save(stage.Model, path);
            descriptors.Add(stage.Descriptor with
            {
                Sha256 = Manifest.Sha256Hex(path),
                DataFile = external ? dataFile : null,
                DataSha256 = external ? Manifest.Sha256Hex(dataPath) : null,
            });
        }
        // A foreign export has no model.json: its description comes from genai_config.json, config.json or the graph.
        var description = TryReadDescription(sourceDir) ?? ForeignModel.TryDescribe(sourceDir, analysis, modelPath);
        var tokenizer = CopyTokenizerFiles(sourceDir, outDir, description?.Tokenizer is { Length: > 0 } named ? named : null);
        foreach (var file in ForeignModel.DescriptionFiles)
            if (File.Exists(Path.Combine(sourceDir, file)))
                File.Copy(Path.Combine(sourceDir, file), Path.Combine(outDir, file), overwrite: true);
        if (description is not null) WriteDescription(outDir, description);
        var manifest = new Manifest(1, description?.Name ?? model.Graph.Name, analysis.BlockCount, description?.Config,
            Manifest.Sha256Hex(modelPath), tokenizer, descriptors, description?.Quantization);
        manifest.Save(outDir);
        return manifest;
    }

    /// <summary>
    /// Copies the tokenizer's files that are present (tokenizer.json, tokenizer_config.json, generation_config.json,
    /// tokenizer.bin) and returns the name of the tokenizer file for the manifest: <paramref name="named"/> when present,
    /// else tokenizer.json before tokenizer.bin; null when there is none.
    /// </summary>
    private static string? CopyTokenizerFiles(string sourceDir, string outDir, string? named)
    {
        foreach (var file in TokenizerLoader.Files)
            if (File.Exists(Path.Combine(sourceDir, file)))
                File.Copy(Path.Combine(sourceDir, file), Path.Combine(outDir, file), overwrite: true);
        return named is not null && File.Exists(Path.Combine(outDir, named)) ? named
            : File.Exists(Path.Combine(outDir, HfTokenizer.TokenizerFile)) ? HfTokenizer.TokenizerFile
            : File.Exists(Path.Combine(outDir, TokenizerFile)) ? TokenizerFile
            : null;
    }

    /// <summary>The model name's mark of a lossy import, e.g. <c>-int4</c>.</summary>
    private static string Suffix(QuantizationOptions? quantization) =>
        quantization is null ? "" : "-" + quantization.Kind.ToString().ToLowerInvariant();

    public static ModelDescription? TryReadDescription(string directory)
    {
        var path = Path.Combine(directory, DescriptionFile);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<ModelDescription>(File.ReadAllBytes(path), JsonOptions);
        }
        catch (JsonException e)
        {
            throw new MeshException(MeshErrorCode.InvalidManifest, $"{path} is not a model description: {e.Message}", e);
        }
    }

    private static void WriteDescription(string directory, ModelDescription description) =>
        File.WriteAllBytes(Path.Combine(directory, DescriptionFile), JsonSerializer.SerializeToUtf8Bytes(description, JsonOptions));

    /// <summary>A llama2.c-format tokenizer: specials, byte fallback, then printable ASCII pairs as merges with falling scores.</summary>
    private static void WriteSyntheticTokenizer(string path, int vocab)
    {
        using var writer = new BinaryWriter(File.Create(path));
        writer.Write(8);
        void Piece(string text, float score)
        {
            var bytes = Encoding.Latin1.GetBytes(text);
            writer.Write(score);
            writer.Write(bytes.Length);
            writer.Write(bytes);
        }
        Piece("<unk>", 0); Piece("\n<s>\n", 0); Piece("\n</s>\n", 0);
        for (var b = 0; b < 256; b++) Piece($"<0x{b:X2}>", 0);
        var letters = " etaoinshrdlucmfwypvbgkjqxz";
        var added = 0;
        for (var i = 0; i < letters.Length && 259 + added < vocab; i++)
        {
            Piece(letters[i].ToString(), -1 - added);
            added++;
        }
        for (var i = 0; 259 + added < vocab; i++)
        {
            Piece(letters[i % letters.Length].ToString() + letters[i / letters.Length % letters.Length] + new string('~', i / (letters.Length * letters.Length)), -100 - added);
            added++;
        }
    }
}
