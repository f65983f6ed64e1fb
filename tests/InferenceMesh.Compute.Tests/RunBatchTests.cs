using System.Runtime.InteropServices;
using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Onnx;

namespace InferenceMesh.Compute.Tests;

public sealed class RunBatchTests
{
    private const int DecodeSteps = 24;

    /// <summary>A wider synthetic model, so ONNX Runtime's matrix products take their blocked, multi-threaded paths.</summary>
    private static readonly ModelConfig Wide = new(512, 1408, 2, 8, 8, 512, 256, 1e-5f, 10000f);

    public static TheoryData<string> Models() => new() { "stories260K", "synthetic", "synthetic-512" };

    [Theory]
    [MemberData(nameof(Models))]
    public void SessionsRunInBatchesGiveByteIdenticalLogitsAndGreedyTokensToRunningAlone(string which)
    {
        var (model, vocab) = Load(which);
        // Three prompts of one length batch together at every step; the fourth is at other positions throughout.
        var prompts = new Dictionary<string, long[]>
        {
            ["a"] = [1, 203, 207, 261, 178],
            ["b"] = [1, 42, 7, 11, 250],
            ["c"] = [1, 5, 6, 7, 8],
            ["d"] = [1, 9, 10],
        };
        var blocks = BatchedRunsGiveTheBitsOfRunsAlone(model, prompts, vocab);
        // The prefill ran a, b and c together (d's prompt is shorter); every decode step ran all four together on every
        // stage, d at other positions than the rest (its past padded like theirs).
        Assert.All(blocks, stage => Assert.Equal(LlamaOnnxBuilder.PastPadding, stage.Padding));
        Assert.All(blocks, stage => Assert.Equal(DecodeSteps + 1, stage.Runs));
        Assert.All(blocks, stage => Assert.Equal(3 + 4 * DecodeSteps, stage.Rows));
    }

    /// <summary>
    /// Sessions whose pasts differ by whole padding blocks (1 to 200 positions), run together at every decode step, give
    /// the bits each gives alone, on one ONNX Runtime thread and on two; a past padded this way changes no key's place.
    /// </summary>
    [Theory]
    [InlineData("stories260K", 1)]
    [InlineData("synthetic-512", 1)]
    [InlineData("synthetic-512", 2)]
    public void SessionsAtDifferentPositionsShareEveryDecodeRunAndGiveTheBitsEachGivesAlone(string which, int threads)
    {
        var (model, vocab) = Load(which);
        var random = new Random(7);
        var prompts = new[] { 1, 5, 15, 16, 17, 33, 63, 64, 65, 140, 200 }.ToDictionary(n => $"p{n}", n => new[] { 1L }.Concat(Enumerable.Range(1, n - 1).Select(_ => (long)random.Next(3, vocab))).ToArray());
        var blocks = BatchedRunsGiveTheBitsOfRunsAlone(model, prompts, vocab, new OrtExecutorOptions { IntraOpThreads = threads });
        // Prompts of different lengths prefill alone; every decode step ran every session in one run per block stage.
        Assert.All(blocks, stage => Assert.Equal(DecodeSteps, stage.Runs));
        Assert.All(blocks, stage => Assert.Equal(prompts.Count * DecodeSteps, stage.Rows));
    }

    /// <summary>The same graph without the padding declaration (as a model imported before it, or another tool's export): only sessions at one position share a run.</summary>
    [Fact]
    public void AGraphThatDoesNotDeclarePaddedPastsBatchesOnlySessionsAtTheSamePosition()
    {
        var (model, _) = Load("stories260K");
        model.MetadataProps.Clear();
        var stages = Executors(model);
        try
        {
            var blocks = stages[1];
            Assert.Equal(0, blocks.PastPadding);
            TensorData Row(int positions) => TensorData.FromFloats([1, positions, 64], Enumerable.Range(0, positions * 64).Select(i => (i % 5) * 0.1f).ToArray());
            foreach (var result in blocks.RunBatch([new("x", Row(2), 0), new("y", Row(3), 0), new("z", Row(2), 0)])) result.Output!.Dispose();
            Assert.Equal(1, blocks.BatchedRuns);
            foreach (var result in blocks.RunBatch([new("x", Row(1), 2), new("y", Row(1), 3), new("z", Row(1), 2)])) result.Output!.Dispose();
            Assert.Equal(2, blocks.BatchedRuns);
            Assert.Equal(4, blocks.BatchedRows);
        }
        finally
        {
            foreach (var stage in stages) stage.Dispose();
        }
    }

    [Fact]
    public void AnItemThatDoesNotFollowOnFailsAloneAndTheOthersRun()
    {
        var (model, _) = Load("stories260K");
        var stages = Executors(model);
        try
        {
            var blocks = stages[1];
            using var first = TensorData.FromFloats([1, 2, 64], Enumerable.Range(0, 128).Select(i => i * 0.01f).ToArray());
            Assert.All(blocks.RunBatch([new("x", first, 0), new("y", first, 0)]), r => r.Output!.Dispose());
            using var next = TensorData.FromFloats([1, 1, 64], Enumerable.Range(0, 64).Select(i => i * 0.02f).ToArray());
            var results = blocks.RunBatch([new("x", next, 2), new("y", next, 5), new("x", next, 3), new("z", next, 0)]);
            Assert.True(results[0].Succeeded);
            Assert.Equal(MeshErrorCode.ShapeMismatch, results[1].Error?.Code);
            Assert.Equal(MeshErrorCode.InvalidArgument, results[2].Error?.Code);
            Assert.True(results[3].Succeeded);
            Assert.Equal(3, blocks.CachedLength("x"));
            Assert.Equal(2, blocks.CachedLength("y"));
            Assert.Equal(1, blocks.CachedLength("z"));
            foreach (var result in results) result.Output?.Dispose();
        }
        finally
        {
            foreach (var stage in stages) stage.Dispose();
        }
    }

    /// <summary>
    /// Generates every prompt alone (fresh executors each) and all together (one set, each stage given every session's
    /// step as one batch), asserts byte-identical logits and tokens, and returns the shared block stages' batching counters.
    /// </summary>
    private static List<(long Runs, long Rows, int Padding)> BatchedRunsGiveTheBitsOfRunsAlone(ModelProto model, Dictionary<string, long[]> prompts, int vocab, OrtExecutorOptions? options = null)
    {
        var alone = prompts.ToDictionary(p => p.Key, p =>
        {
            var stages = Executors(model, options);
            try
            {
                return Generate(stages, new Dictionary<string, long[]> { [p.Key] = p.Value }, vocab)[p.Key];
            }
            finally
            {
                foreach (var stage in stages) stage.Dispose();
            }
        });
        var shared = Executors(model, options);
        try
        {
            var batched = Generate(shared, prompts, vocab);
            foreach (var session in prompts.Keys)
            {
                Assert.Equal(alone[session].Tokens, batched[session].Tokens);
                for (var step = 0; step < alone[session].Logits.Count; step++)
                    Assert.True(alone[session].Logits[step].AsSpan().SequenceEqual(batched[session].Logits[step]), $"session {session}'s logits differ at step {step}");
            }
            var blocks = shared.Where(stage => stage.Stage.State.Count > 0).Select(stage => (stage.BatchedRuns, stage.BatchedRows, stage.PastPadding)).ToList();
            Assert.Equal(2, blocks.Count);
            return blocks;
        }
        finally
        {
            foreach (var stage in shared) stage.Dispose();
        }
    }

    /// <summary>Greedy generation of every session, all sessions' steps of a position passed to each stage as one batch.</summary>
    private static Dictionary<string, (List<long> Tokens, List<byte[]> Logits)> Generate(OrtStageExecutor[] stages, Dictionary<string, long[]> prompts, int vocab)
    {
        var state = prompts.ToDictionary(p => p.Key, p => (Next: p.Value, Position: 0, Tokens: new List<long>(), Logits: new List<byte[]>()));
        for (var step = 0; step <= DecodeSteps; step++)
        {
            var ids = state.Keys.ToList();
            var current = ids.Select(id => TensorData.FromInt64s([1, state[id].Next.Length], state[id].Next)).ToArray();
            foreach (var stage in stages)
            {
                var results = stage.RunBatch(ids.Select((id, k) => new StageBatchItem(id, current[k], state[id].Position)).ToList());
                for (var k = 0; k < ids.Count; k++)
                {
                    Assert.Null(results[k].Error);
                    current[k].Dispose();
                    current[k] = results[k].Output!;
                }
            }
            for (var k = 0; k < ids.Count; k++)
            {
                var s = state[ids[k]];
                var last = current[k].AsFloats()[^vocab..];
                long token = Sampler.ArgMax(last);
                s.Logits.Add(MemoryMarshal.AsBytes(last).ToArray());
                s.Tokens.Add(token);
                state[ids[k]] = (new[] { token }, s.Position + s.Next.Length, s.Tokens, s.Logits);
                current[k].Dispose();
            }
        }
        return state.ToDictionary(s => s.Key, s => (s.Value.Tokens, s.Value.Logits));
    }

    private static OrtStageExecutor[] Executors(ModelProto model, OrtExecutorOptions? options = null)
    {
        var analysis = new GraphAnalysis(model);
        return GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, 2))
            .Select(s => new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray(), options))
            .ToArray();
    }

    private static (ModelProto Model, int Vocab) Load(string which) => which switch
    {
        "stories260K" => (OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile)), 512),
        "synthetic-512" => (Onnx.Import.LlamaOnnxBuilder.Build(Onnx.Import.LlamaWeights.Synthetic(Wide, 1), "wide"), Wide.Vocab),
        _ => (OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile)), TestModels.SmallSyntheticConfig.Vocab),
    };
}
