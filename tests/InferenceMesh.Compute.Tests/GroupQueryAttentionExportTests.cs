using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests;

/// <summary>
/// Exports whose <c>GroupQueryAttention</c> nodes take <c>seqlens_k</c> and <c>total_sequence_length</c> as graph inputs,
/// with a growing and with a static (fixed-length, written-in-place) cache: the executors compute those lengths from the
/// session state, and the stages equal the unsplit file fed the lengths by hand, over a prefill and 16 decode steps.
/// </summary>
public sealed class GroupQueryAttentionExportTests(ITestOutputHelper output)
{
    private const int Layers = 3;

    [Theory]
    [InlineData(null)]
    [InlineData(32)]
    public void StagesComputeTheAttentionLengthsAndEqualTheUnsplitFile(int? staticCache)
    {
        var model = GqaExport.Build(Layers, seed: 5, staticCache);
        var analysis = new GraphAnalysis(model);
        Assert.Equal(Layers, analysis.BlockCount);
        var stages = GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(Layers, Layers));
        Assert.All(stages.Skip(1).SkipLast(1), s => Assert.Equal(["seqlens_k", "total_sequence_length"], s.Descriptor.ContextInputs.Order()));
        using var chained = new StagePipeline(stages.Select(s => (IStageExecutor)new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray())).ToList());
        // The lengths as GroupQueryAttention documents them, fed by hand: seqlens_k = total − 1 (lengthError shifts it).
        var lengthError = 0;
        using var reference = new HandFedDecoder(model.ToByteArray(), [1, GqaExport.KvHeads, staticCache ?? 0, GqaExport.HeadSize], (name, position, steps) => name switch
        {
            "seqlens_k" => OrtValue.CreateTensorValueFromMemory(new[] { position + steps - 1 + lengthError }, [1]),
            "total_sequence_length" => OrtValue.CreateTensorValueFromMemory(new[] { position + steps }, []),
            _ => throw new InvalidOperationException($"no value for input '{name}'"),
        });

        var (maxDiff, maxEffectOfAWrongLength, position) = reference.Compare(chained, [1, 7, 19, 30, 44], decodeSteps: 16, GqaExport.Vocab, (step, tokens, at) =>
        {
            if (step != 3) return null;
            lengthError = -1;
            var wrong = reference.Run(tokens, at, keep: false);
            lengthError = 0;
            return wrong;
        });
        output.WriteLine($"GQA export ({(staticCache is null ? "growing" : $"static {staticCache}")} cache), {stages.Count} stages: max |diff| {maxDiff:g3}; a length off by one moves the logits by {maxEffectOfAWrongLength:g3}");
        Assert.True(maxDiff <= 1e-5, $"max abs difference {maxDiff}");
        Assert.True(maxEffectOfAWrongLength > 1e-3, "a wrong seqlens_k should change the logits, or this test could not catch one");
        Assert.All(chained.Stages.Skip(1).SkipLast(1), s => Assert.Equal(position, s.CachedLength("s")));
    }

    [Fact]
    public void AStaticCacheRefusesAStepPastItsLengthWithContextOverflow()
    {
        var model = GqaExport.Build(1, seed: 6, staticCache: 8);
        var stage = GraphSplitter.Split(model, new GraphAnalysis(model), BlockRange.SplitEvenly(1, 1))[1];
        using var executor = new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray());
        using (var first = executor.Run("s", TensorData.FromFloats([1, 6, GqaExport.Width], new float[6 * GqaExport.Width]), 0)) { }
        var error = Assert.Throws<MeshException>(() => executor.Run("s", TensorData.FromFloats([1, 3, GqaExport.Width], new float[3 * GqaExport.Width]), 6));
        Assert.Equal(MeshErrorCode.ContextOverflow, error.Code);
        Assert.Contains("static cache holds 8", error.Message);
        Assert.Equal(6, executor.CachedLength("s"));
    }
}
