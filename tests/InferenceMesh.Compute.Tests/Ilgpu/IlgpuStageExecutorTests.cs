using Google.Protobuf;
using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Onnx.Tokenizer;
using Onnx;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>
/// Every block stage of a synthetic model and of stories260K, run by <see cref="IlgpuStageExecutor"/>, against
/// <see cref="OrtStageExecutor"/> on the same inputs: max abs diff ≤ 1e-4 on the activations over a prefill and 64 decode steps.
/// </summary>
[Collection(IlgpuCollection.Name)]
public sealed class IlgpuStageExecutorTests(IlgpuBackends backends, ITestOutputHelper output)
{
    private const float Tolerance = 1e-4f;
    private const int DecodeSteps = 64;
    internal const string Stories260K = "/work/shared/models/stories260K/stories260K.bin";
    internal const string Tok512 = "/work/shared/models/stories260K/tok512.bin";

    internal static readonly ModelConfig SyntheticConfig = new(Dim: 32, HiddenDim: 72, Layers: 4, Heads: 4, KvHeads: 2, Vocab: 64, MaxSequence: 128, NormEpsilon: 1e-5f, RopeTheta: 10000f);

    internal static ModelProto SyntheticModel(out LlamaWeights weights)
    {
        weights = LlamaWeights.Synthetic(SyntheticConfig, seed: 7);
        return LlamaOnnxBuilder.Build(weights, "synthetic-test");
    }

    internal static string RequireStories260K()
    {
        if (!File.Exists(Stories260K))
            Assert.Fail($"the stories260K checkpoint is missing: expected {Stories260K} (see ../shared/models/stories260K/README.md)");
        return Stories260K;
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void SyntheticModelEveryBlockStageMatchesOnnxRuntime(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var model = SyntheticModel(out _);
        var stages = GraphSplitter.Split(model, [new BlockRange(0, 1), new BlockRange(1, 3), new BlockRange(3, 4)]);
        var prompt = new[] { 1, 5, 9, 17, 33, 2, 40 };
        CompareStages(stages, device, prompt, SyntheticConfig.MaxSequence, greedy: false);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void Stories260KEveryBlockStageMatchesOnnxRuntime(IlgpuBackend backend)
    {
        var checkpoint = RequireStories260K();
        var device = backends.Get(backend, output);
        var weights = Llama2cCheckpoint.Read(checkpoint);
        var model = LlamaOnnxBuilder.Build(weights, "stories260K");
        var stages = GraphSplitter.Split(model, [new BlockRange(0, 2), new BlockRange(2, 3), new BlockRange(3, 5)]);
        var tokenizer = Llama2cTokenizer.Load(Tok512, weights.Config.Vocab);
        var prompt = tokenizer.Encode("Once upon a time", bos: true).ToArray();
        CompareStages(stages, device, prompt, weights.Config.MaxSequence, greedy: true);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void WholeModelAsOneBlockStageMatchesOnnxRuntime(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var model = SyntheticModel(out _);
        var stages = GraphSplitter.Split(model, [new BlockRange(0, 4)]);
        CompareStages(stages, device, [1, 2, 3], SyntheticConfig.MaxSequence, greedy: false, decodeSteps: 8);
    }

    /// <summary>
    /// Runs head → block stages → tail on ONNX Runtime; at each block stage the same input also goes through the ILGPU executor
    /// and the outputs are compared. Decode tokens are the ORT chain's greedy picks, or a fixed pseudo-random walk.
    /// </summary>
    private void CompareStages(IReadOnlyList<SplitStage> stages, IlgpuDevice device, int[] prompt, int maxSequence, bool greedy, int decodeSteps = DecodeSteps)
    {
        var ortOptions = new OrtExecutorOptions(MaxSessions: 4, MaxSequence: maxSequence, IntraOpThreads: 1);
        var ilgpuOptions = new IlgpuExecutorOptions(MaxSessions: 4, MaxSequence: maxSequence);
        var head = new OrtStageExecutor(stages[0].Descriptor, stages[0].Model.ToByteArray(), ortOptions);
        var tail = new OrtStageExecutor(stages[^1].Descriptor, stages[^1].Model.ToByteArray(), ortOptions);
        var blockStages = stages.Where(s => s.Descriptor.Kind == StageKind.Blocks).ToList();
        var ort = blockStages.Select(s => new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray(), ortOptions)).ToList();
        var ilgpu = blockStages.Select(s => new IlgpuStageExecutor(s.Descriptor, s.Model.ToByteArray(), ilgpuOptions, device)).ToList();
        try
        {
            const string session = "s1";
            var worst = new float[blockStages.Count];
            var tokens = prompt;
            var position = 0;
            var next = 3;
            for (var step = 0; step <= decodeSteps; step++)
            {
                var activation = head.Run(session, TensorData.FromInt64s([1, tokens.Length], tokens.Select(t => (long)t).ToArray()), position);
                for (var i = 0; i < blockStages.Count; i++)
                {
                    var expected = ort[i].Run(session, activation, position);
                    var actual = ilgpu[i].Run(session, activation, position);
                    Assert.Equal(expected.Shape, actual.Shape);
                    var diff = ReferenceLlama.MaxAbsDiff(expected.AsFloats(), actual.AsFloats());
                    Assert.True(diff <= Tolerance, $"stage {blockStages[i].Descriptor.Blocks} step {step} (position {position}): max abs diff {diff} > {Tolerance}");
                    worst[i] = MathF.Max(worst[i], diff);
                    Assert.Equal(ort[i].CachedLength(session), ilgpu[i].CachedLength(session));
                    activation = expected;
                }
                var logits = tail.Run(session, activation, position).AsFloats();
                position += tokens.Length;
                if (greedy)
                {
                    var last = logits[^(logits.Length / tokens.Length)..];
                    next = 0;
                    for (var v = 1; v < last.Length; v++) if (last[v] > last[next]) next = v;
                }
                else
                {
                    next = (next * 7 + 5) % (int)(logits.Length / tokens.Length);
                }
                tokens = [next];
            }
            for (var i = 0; i < blockStages.Count; i++)
                output.WriteLine($"blocks {blockStages[i].Descriptor.Blocks}: max abs diff over prefill {prompt.Length} + {decodeSteps} decode steps = {worst[i]:E2}");
        }
        finally
        {
            head.Dispose();
            tail.Dispose();
            foreach (var e in ort) e.Dispose();
            foreach (var e in ilgpu) e.Dispose();
        }
    }
}
