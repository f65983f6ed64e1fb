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
    private readonly StageExecutorFactory _factory;

    private LocalModel(StagePipeline pipeline, Llama2cTokenizer tokenizer, ModelConfig config, StageExecutorFactory factory)
    {
        _factory = factory;
        Pipeline = pipeline;
        Tokenizer = tokenizer;
        Config = config;
    }

    public StagePipeline Pipeline { get; }
    public Llama2cTokenizer Tokenizer { get; }
    public ModelConfig Config { get; }

    /// <param name="stages">Block stages to split an imported model into; null runs it whole (as one block stage on ILGPU). Ignored for a split directory.</param>
    /// <param name="executor">What runs the block stages.</param>
    public static LocalModel Open(string directory, int? stages = null, ExecutorKind executor = ExecutorKind.Ort, Action<string>? log = null)
    {
        if (!Directory.Exists(directory))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"model directory {directory} does not exist");
        var description = ModelStore.TryReadDescription(directory);
        var executors = new List<IStageExecutor>();
        // Several ONNX Runtime sessions run one after another here: spinning threads of one would steal the cores of the next.
        var factory = new StageExecutorFactory(executor, log, new OrtExecutorOptions(AllowSpinning: stages is null && !File.Exists(Path.Combine(directory, Manifest.FileName))));
        log?.Invoke(factory.Choice.Reason);
        try
        {
            ModelConfig? config;
            if (File.Exists(Path.Combine(directory, Manifest.FileName)))
            {
                var manifest = Manifest.Load(directory);
                config = manifest.Config ?? description?.Config;
                foreach (var stage in manifest.Stages)
                    executors.Add(factory.Create(stage, File.ReadAllBytes(Path.Combine(directory, stage.File)), MaxSequence(config), externalDataDirectory: directory));
            }
            else
            {
                var modelPath = Path.Combine(directory, ModelStore.ModelFile);
                var model = OnnxModelFile.Load(modelPath);
                config = description?.Config;
                if (stages is null && !factory.UsesIlgpu)
                {
                    executors.Add(factory.Create(GraphSplitter.DescribeWhole(model, ModelStore.ModelFile), File.ReadAllBytes(modelPath), MaxSequence(config), externalDataDirectory: directory));
                }
                else
                {
                    var analysis = new GraphAnalysis(model);
                    foreach (var stage in GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, stages ?? 1)))
                        executors.Add(factory.Create(stage.Descriptor, Google.Protobuf.MessageExtensions.ToByteArray(stage.Model), MaxSequence(config), externalDataDirectory: directory));
                }
            }
            if (config is null)
                throw new MeshException(MeshErrorCode.InvalidManifest, $"{directory} has no {ModelStore.DescriptionFile} giving the model's architecture");
            var tokenizer = Llama2cTokenizer.Load(Path.Combine(directory, ModelStore.TokenizerFile), config.Vocab);
            return new LocalModel(new StagePipeline(executors), tokenizer, config, factory);
        }
        catch
        {
            foreach (var created in executors) created.Dispose();
            factory.Dispose();
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

    public void Dispose()
    {
        Pipeline.Dispose();
        _factory.Dispose();
    }

    private static int MaxSequence(ModelConfig? config) => config?.MaxSequence ?? 4096;
}
