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

    private LocalModel(StagePipeline pipeline, ITextTokenizer tokenizer, ModelConfig config, StageExecutorFactory factory)
    {
        _factory = factory;
        Pipeline = pipeline;
        Tokenizer = tokenizer;
        Config = config;
    }

    public StagePipeline Pipeline { get; }
    /// <summary>The model's tokenizer: llama2.c's tokenizer.bin or Hugging Face's tokenizer.json.</summary>
    public ITextTokenizer Tokenizer { get; }
    public ModelConfig Config { get; }

    /// <param name="stages">Block stages to split an imported model into; null runs it whole (as one block stage on ILGPU). Ignored for a split directory.</param>
    /// <param name="executor">What runs the block stages.</param>
    /// <param name="ortOptions">Threading of the ONNX Runtime executors; by default one graph runs on its own spinning pool and
    /// several stages share the process's pool (<see cref="OrtThreadPool"/>).</param>
    public static LocalModel Open(string directory, int? stages = null, ExecutorKind executor = ExecutorKind.Ort, Action<string>? log = null, OrtExecutorOptions? ortOptions = null)
    {
        if (!Directory.Exists(directory))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"model directory {directory} does not exist");
        var description = ModelStore.TryReadDescription(directory);
        var executors = new List<IStageExecutor>();
        // Several ONNX Runtime sessions run one after another here: with a pool each, spinning threads of one would steal
        // the cores of the next, and without spinning every parallel operator wakes sleeping threads; one shared pool has neither.
        var whole = stages is null && !File.Exists(Path.Combine(directory, Manifest.FileName));
        var factory = new StageExecutorFactory(executor, log, ortOptions ?? new OrtExecutorOptions(SharedThreadPool: !whole));
        log?.Invoke(factory.Choice.Reason);
        try
        {
            ModelConfig? config;
            string? tokenizerFile = description?.Tokenizer;
            if (File.Exists(Path.Combine(directory, Manifest.FileName)))
            {
                var manifest = Manifest.Load(directory);
                config = manifest.Config ?? description?.Config;
                tokenizerFile = manifest.TokenizerFile ?? tokenizerFile;
                foreach (var stage in manifest.Stages)
                    executors.Add(factory.Create(stage, File.ReadAllBytes(Path.Combine(directory, stage.File)), MaxSequence(config), externalDataDirectory: directory));
            }
            else
            {
                // A foreign export may name its graph anything and describe itself in genai_config.json or config.json.
                var modelPath = ForeignModel.FindModelFile(directory);
                var model = OnnxModelFile.Load(modelPath);
                var analysis = new GraphAnalysis(model);
                config = (description ?? ForeignModel.TryDescribe(directory, analysis, modelPath))?.Config;
                if (stages is null && !factory.UsesIlgpu)
                {
                    // An Optimum merged decoder runs as its with-past branch (the analysis unmerged it); any other graph as its file.
                    var bytes = analysis.Unmerged ? Google.Protobuf.MessageExtensions.ToByteArray(analysis.Model) : File.ReadAllBytes(modelPath);
                    executors.Add(factory.Create(GraphSplitter.DescribeWhole(analysis, Path.GetFileName(modelPath)), bytes, MaxSequence(config), externalDataDirectory: directory));
                }
                else
                {
                    foreach (var stage in GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, stages ?? 1)))
                        executors.Add(factory.Create(stage.Descriptor, Google.Protobuf.MessageExtensions.ToByteArray(stage.Model), MaxSequence(config), externalDataDirectory: directory));
                }
            }
            if (config is null)
                throw new MeshException(MeshErrorCode.InvalidManifest, $"{directory} has no {ModelStore.DescriptionFile} giving the model's architecture");
            var tokenizer = TokenizerLoader.LoadOrIdsOnly(directory, config.Vocab, tokenizerFile);
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
    public IEnumerable<string> Generate(string prompt, GenerationOptions options) =>
        Run(TextGenerator.EncodePrompt(Tokenizer, prompt), options, null, echoPrompt: true);

    /// <summary>
    /// Streams the assistant's reply to <paramref name="messages"/>, rendered with the model's chat template (or
    /// <paramref name="template"/>'s family); only the reply is yielded, and the family's end-of-turn token ends it.
    /// A model without a template (stories260K) continues the messages' text joined with line breaks.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the model's template is of no known family and none is given.</exception>
    public IEnumerable<string> GenerateChat(IReadOnlyList<ChatTurn> messages, GenerationOptions options, ChatTemplateFamily? template = null)
    {
        var prompt = ChatPrompt.Encode(Tokenizer, messages, template);
        return Run(prompt.Tokens, options, prompt.StopIds, echoPrompt: false);
    }

    /// <summary>
    /// Streams the ids generated after <paramref name="prompt"/> (ids only: for a model without a tokenizer, or to compare
    /// runs exactly) in a fresh session, closed when enumeration ends; stops at the tokenizer's EOS ids as text generation does.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for an empty prompt or a negative id.</exception>
    public IEnumerable<int> GenerateIds(IReadOnlyList<int> prompt, GenerationOptions options)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        try
        {
            var generator = new TokenGenerator(Config.MaxSequence, Tokenizer.EosIds, Manifest.MaxStepPositionsOf(Pipeline.Stages[0].Stage));
            foreach (var id in generator.GenerateAsync(prompt, options, (tokens, start, _) => ValueTask.FromResult(Pipeline.LastLogits(sessionId, tokens, start))).ToBlockingEnumerable())
                yield return id;
        }
        finally
        {
            Pipeline.CloseSession(sessionId);
        }
    }

    private IEnumerable<string> Run(IReadOnlyList<int> prompt, GenerationOptions options, IReadOnlySet<int>? stops, bool echoPrompt)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        var stepped = false;
        try
        {
            foreach (var text in new TextGenerator(Tokenizer, Config.MaxSequence, stops, decodeReplyAlone: !echoPrompt, Manifest.MaxStepPositionsOf(Pipeline.Stages[0].Stage)).GenerateAsync(prompt, options, (tokens, start, _) =>
            {
                stepped = true;
                return ValueTask.FromResult(Pipeline.LastLogits(sessionId, tokens, start));
            }).ToBlockingEnumerable())
            {
                // The generator hands out the prompt's text before its first step.
                if (echoPrompt || stepped) yield return text;
            }
        }
        finally
        {
            Pipeline.CloseSession(sessionId);
        }
    }

    public void Dispose()
    {
        (Tokenizer as IDisposable)?.Dispose();
        Pipeline.Dispose();
        _factory.Dispose();
    }

    private static int MaxSequence(ModelConfig? config) => config?.MaxSequence ?? 4096;
}
