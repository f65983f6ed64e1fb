using Google.Protobuf;
using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Onnx.Tokenizer;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>Limits, session bookkeeping, the group-kernel path, and whole generations through ILGPU block stages.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class IlgpuExecutorBehaviourTests(IlgpuBackends backends, ITestOutputHelper output)
{
    private static SplitStage WholeBlocks(ModelConfig config, out IReadOnlyList<SplitStage> all)
    {
        var model = LlamaOnnxBuilder.Build(LlamaWeights.Synthetic(config, seed: 5), "tiny");
        all = GraphSplitter.Split(model, [new BlockRange(0, config.Layers)]);
        return all.Single(s => s.Descriptor.Kind == StageKind.Blocks);
    }

    private static TensorData Activation(int steps, int dim, int seed) =>
        TensorData.FromFloats([1, steps, dim], ReferenceLlama.Random(new Random(seed), steps * dim));

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void SessionsAndPositionsAreBoundedWithClearErrors(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var stage = WholeBlocks(IlgpuStageExecutorTests.SyntheticConfig, out _);
        using var executor = new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new IlgpuExecutorOptions(MaxSessions: 2, MaxSequence: 8), device);

        executor.Run("a", Activation(6, 32, 1), 0);
        executor.Run("b", Activation(1, 32, 2), 0);
        Assert.Equal(6, executor.CachedLength("a"));
        Assert.Equal(1, executor.CachedLength("b"));
        Assert.Equal(0, executor.CachedLength("nobody"));
        Assert.True(executor.CacheBytesInUse > 0);

        var full = Assert.Throws<MeshException>(() => executor.Run("c", Activation(1, 32, 3), 0));
        Assert.Equal(MeshErrorCode.LimitExceeded, full.Code);
        output.WriteLine(full.Message);

        var overflow = Assert.Throws<MeshException>(() => executor.Run("a", Activation(3, 32, 4), 6));
        Assert.Equal(MeshErrorCode.ContextOverflow, overflow.Code);
        output.WriteLine(overflow.Message);
        Assert.Equal(6, executor.CachedLength("a"));

        var gap = Assert.Throws<MeshException>(() => executor.Run("a", Activation(1, 32, 5), 7));
        Assert.Equal(MeshErrorCode.ShapeMismatch, gap.Code);
        output.WriteLine(gap.Message);

        var shape = Assert.Throws<MeshException>(() => executor.Run("a", Activation(1, 16, 6), 6));
        Assert.Equal(MeshErrorCode.ShapeMismatch, shape.Code);
        output.WriteLine(shape.Message);

        executor.CloseSession("a");
        executor.CloseSession("unknown");
        Assert.Equal(0, executor.CachedLength("a"));
        executor.Run("c", Activation(2, 32, 7), 0);
        executor.CloseSession("b");
        executor.CloseSession("c");
        Assert.Equal(0, executor.CacheBytesInUse);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void LongPrefillInChunksGivesTheSameActivationsAndCache(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var stage = WholeBlocks(IlgpuStageExecutorTests.SyntheticConfig, out _);
        var bytes = stage.Model.ToByteArray();
        using var whole = new IlgpuStageExecutor(stage.Descriptor, bytes, new IlgpuExecutorOptions(MaxSequence: 128), device);
        using var chunked = new IlgpuStageExecutor(stage.Descriptor, bytes, new IlgpuExecutorOptions(MaxSequence: 128, MaxChunkRows: 3), device);
        using var ort = new OrtStageExecutor(stage.Descriptor, bytes, new OrtExecutorOptions(MaxSequence: 128, IntraOpThreads: 1));
        var prompt = Activation(11, 32, 1);
        var expected = ort.Run("s", prompt, 0).AsFloats().ToArray();
        Assert.True(ReferenceLlama.MaxAbsDiff(expected, whole.Run("s", prompt, 0).AsFloats()) <= 1e-4f);
        Assert.True(ReferenceLlama.MaxAbsDiff(expected, chunked.Run("s", prompt, 0).AsFloats()) <= 1e-4f);
        Assert.Equal(11, chunked.CachedLength("s"));
        var next = Activation(1, 32, 2);
        var decoded = ort.Run("s", next, 11).AsFloats().ToArray();
        Assert.True(ReferenceLlama.MaxAbsDiff(decoded, chunked.Run("s", next, 11).AsFloats()) <= 1e-4f);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void GroupKernelPathMatchesOnnxRuntimeForPrefillAndDecode(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        // Tiny, because group barriers are slow on the CPU accelerator; this forces the GPU's code path there.
        var config = new ModelConfig(Dim: 16, HiddenDim: 24, Layers: 2, Heads: 2, KvHeads: 1, Vocab: 32, MaxSequence: 32, NormEpsilon: 1e-5f, RopeTheta: 10000f);
        var stage = WholeBlocks(config, out _);
        using var ort = new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new OrtExecutorOptions(MaxSequence: 32, IntraOpThreads: 1));
        using var ilgpu = new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new IlgpuExecutorOptions(MaxSequence: 32, GroupedKernels: true), device);
        var position = 0;
        foreach (var steps in new[] { 6, 1, 1, 1 })
        {
            var x = Activation(steps, 16, position);
            var diff = ReferenceLlama.MaxAbsDiff(ort.Run("s", x, position).AsFloats(), ilgpu.Run("s", x, position).AsFloats());
            output.WriteLine($"{steps} rows at {position}: max abs diff {diff:E2}");
            Assert.True(diff <= 1e-4f, $"max abs diff {diff}");
            position += steps;
        }
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void Stories260KGeneratesTheReferenceTextWithILGPUBlockStages(IlgpuBackend backend)
    {
        var checkpoint = IlgpuStageExecutorTests.RequireStories260K();
        var device = backends.Get(backend, output);
        var weights = Llama2cCheckpoint.Read(checkpoint);
        var stages = GraphSplitter.Split(LlamaOnnxBuilder.Build(weights, "stories260K"), [new BlockRange(0, 3), new BlockRange(3, 5)]);
        var config = weights.Config;
        var executors = new List<IStageExecutor>();
        foreach (var stage in stages)
            executors.Add(stage.Descriptor.Kind == StageKind.Blocks
                ? new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new IlgpuExecutorOptions(MaxSessions: 1, MaxSequence: config.MaxSequence), device)
                : new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new OrtExecutorOptions(MaxSessions: 1, MaxSequence: config.MaxSequence, IntraOpThreads: 1)));
        using var pipeline = new StagePipeline(executors);
        var tokenizer = Llama2cTokenizer.Load(IlgpuStageExecutorTests.Tok512, config.Vocab);
        var text = string.Concat(new TextGenerator(tokenizer, config.MaxSequence)
            .Generate("", new GenerationOptions(MaxTokens: 256), (tokens, start) => pipeline.LastLogits("s", tokens, start)));
        output.WriteLine(text);
        Assert.Equal(ReferenceText, text);
    }

    /// <summary>The reference output of ../shared/models/stories260K/README.md (greedy, 256 steps, no prompt), without the code block's final line end.</summary>
    private const string ReferenceText =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.\n" +
        "Lily's mom said, \"Lily, let's go to the park.\" Lily was sad and didn't know what to do. She said, \"I want to play with your ball, but I can't find it.\"\n" +
        "Lily was sad and didn't know what to do. She said, \"I'm sorry, Lily. I didn't know what to do.\"\n" +
        "Lily didn't want to help her mom, so she said, \"I'm sorry, mom. I didn't know what to do.\" Her mom said, \"Don't worry, Lily. We can help you.";
}
