using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Onnx.Tokenizer;

namespace InferenceMesh.Compute;

/// <summary>
/// A model opened for in-process generation: an imported directory (<c>model.onnx</c>), run whole or split
/// in memory into N block stages, or a split directory (<c>manifest.json</c>) run stage by stage.
/// </summary>
public sealed class LocalModel : IDisposable
{
    private LocalModel(StagePipeline pipeline, Llama2cTokenizer tokenizer, ModelConfig config)
    {
        Pipeline = pipeline;
        Tokenizer = tokenizer;
        Config = config;
    }

    public StagePipeline Pipeline { get; }
    public Llama2cTokenizer Tokenizer { get; }
    public ModelConfig Config { get; }

    /// <param name="stages">Block stages to split an imported model into; null runs it whole. Ignored for a split directory.</param>
    public static LocalModel Open(string directory, int? stages = null, OrtExecutorOptions? options = null)
    {
        if (!Directory.Exists(directory))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"model directory {directory} does not exist");
        var description = ModelStore.TryReadDescription(directory);
        var executors = new List<IStageExecutor>();
        try
        {
            ModelConfig? config;
            if (File.Exists(Path.Combine(directory, Manifest.FileName)))
            {
                var manifest = Manifest.Load(directory);
                config = manifest.Config ?? description?.Config;
                var executorOptions = WithContext(options, config);
                foreach (var stage in manifest.Stages)
                    executors.Add(new OrtStageExecutor(stage, File.ReadAllBytes(Path.Combine(directory, stage.File)), executorOptions));
            }
            else
            {
                var modelPath = Path.Combine(directory, ModelStore.ModelFile);
                var model = OnnxModelFile.Load(modelPath);
                config = description?.Config;
                var executorOptions = WithContext(options, config);
                if (stages is null)
                {
                    executors.Add(new OrtStageExecutor(GraphSplitter.DescribeWhole(model, ModelStore.ModelFile), File.ReadAllBytes(modelPath), executorOptions));
                }
                else
                {
                    var analysis = new GraphAnalysis(model);
                    foreach (var stage in GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, stages.Value)))
                        executors.Add(new OrtStageExecutor(stage.Descriptor, Google.Protobuf.MessageExtensions.ToByteArray(stage.Model), executorOptions));
                }
            }
            if (config is null)
                throw new MeshException(MeshErrorCode.InvalidManifest, $"{directory} has no {ModelStore.DescriptionFile} giving the model's architecture");
            var tokenizer = Llama2cTokenizer.Load(Path.Combine(directory, ModelStore.TokenizerFile), config.Vocab);
            return new LocalModel(new StagePipeline(executors), tokenizer, config);
        }
        catch
        {
            foreach (var executor in executors) executor.Dispose();
            throw;
        }
    }

    /// <summary>Streams generated text for <paramref name="prompt"/> in a fresh session, closed when enumeration ends.</summary>
    public IEnumerable<string> Generate(string prompt, GenerationOptions options)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        try
        {
            foreach (var text in new TextGenerator(Tokenizer, Config.MaxSequence).Generate(prompt, options, (tokens, start) => Pipeline.LastLogits(sessionId, tokens, start)))
                yield return text;
        }
        finally
        {
            Pipeline.CloseSession(sessionId);
        }
    }

    public void Dispose() => Pipeline.Dispose();

    private static OrtExecutorOptions WithContext(OrtExecutorOptions? options, ModelConfig? config) =>
        (options ?? new OrtExecutorOptions()) with { MaxSequence = config?.MaxSequence ?? (options ?? new OrtExecutorOptions()).MaxSequence };
}
