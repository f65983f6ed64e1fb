using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests;

/// <summary>
/// A static-cache export in standard operators (fixed-length pasts written at <c>cache_position</c>, a fixed-length
/// <c>attention_mask</c>): the executors compute both from the session and allocate the pasts at their declared length;
/// the stages equal the unsplit file fed by hand over a prefill and 16 decode steps, and a step past the cache is refused.
/// </summary>
public sealed class StaticCacheExportTests(ITestOutputHelper output)
{
    private static OrtValue HandFedContext(string name, int position, int steps) => name switch
    {
        "cache_position" => OrtValue.CreateTensorValueFromMemory(Enumerable.Range(position, steps).Select(p => (long)p).ToArray(), [steps]),
        "attention_mask" => OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, StaticCacheExport.CacheLength).Select(i => i < position + steps ? 1L : 0L).ToArray(), [1, StaticCacheExport.CacheLength]),
        _ => throw new InvalidOperationException($"no value for input '{name}'"),
    };

    [Fact]
    public void StagesWriteAtTheCachePositionsAndEqualTheUnsplitFile()
    {
        var model = StaticCacheExport.Build(layers: 3, seed: 9);
        var analysis = new GraphAnalysis(model);
        Assert.Equal(3, analysis.BlockCount);
        var stages = GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(3, 3));
        Assert.All(stages.Skip(1).SkipLast(1), s => Assert.Equal(["attention_mask", "cache_position"], s.Descriptor.ContextInputs.Order()));
        using var chained = new StagePipeline(stages.Select(s => (IStageExecutor)new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray())).ToList());
        using var reference = new HandFedDecoder(model.ToByteArray(), [1, StaticCacheExport.CacheLength, StaticCacheExport.Width], HandFedContext);

        var (maxDiff, _, position) = reference.Compare(chained, [1, 8, 15, 22, 29], decodeSteps: 16, StaticCacheExport.Vocab);
        output.WriteLine($"static-cache export, {stages.Count} stages, {position} of {StaticCacheExport.CacheLength} slots: max |diff| {maxDiff:g3}");
        Assert.True(maxDiff <= 1e-5, $"max abs difference {maxDiff}");

        var overflow = Assert.Throws<MeshException>(() => chained.Forward("s", [1, 2, 3, 4], position));
        Assert.Equal(MeshErrorCode.ContextOverflow, overflow.Code);
        Assert.Contains($"static cache holds {StaticCacheExport.CacheLength}", overflow.Message);
    }
}
