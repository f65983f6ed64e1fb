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
        using var reference = new HandFedGqa(model.ToByteArray(), staticCache);

        int[] tokens = [1, 7, 19, 30, 44];
        var position = 0;
        var maxDiff = 0.0;
        var maxEffectOfAWrongLength = 0.0;
        for (var step = 0; step <= 16; step++)
        {
            var expected = reference.Run(tokens, position, lengthError: 0);
            using var actual = chained.Forward("s", tokens, position);
            var got = actual.AsFloats();
            Assert.Equal(expected.Length, got.Length);
            for (var i = 0; i < expected.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(expected[i] - got[i]));
            if (step == 3)
            {
                var wrong = reference.Probe(tokens, position, lengthError: 1);
                for (var i = 0; i < expected.Length; i++) maxEffectOfAWrongLength = Math.Max(maxEffectOfAWrongLength, Math.Abs(expected[i] - wrong[i]));
            }
            position += tokens.Length;
            tokens = [Sampler.ArgMax(expected.AsSpan(^GqaExport.Vocab..))];
        }
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

    /// <summary>The unsplit file on ONNX Runtime, given the lengths as GroupQueryAttention documents them: seqlens_k = total − 1.</summary>
    private sealed class HandFedGqa(byte[] model, int? staticCache) : IDisposable
    {
        private readonly InferenceSession _session = new(model, new SessionOptions { IntraOpNumThreads = 1 });
        private Dictionary<string, OrtValue> _pasts = new(StringComparer.Ordinal);

        public float[] Run(int[] tokens, int position, int lengthError) => Step(tokens, position, lengthError, keep: true);

        /// <summary>Runs a step without keeping its cache.</summary>
        public float[] Probe(int[] tokens, int position, int lengthError) => Step(tokens, position, lengthError, keep: false);

        private float[] Step(int[] tokens, int position, int lengthError, bool keep)
        {
            var total = position + tokens.Length;
            var names = new List<string>();
            var values = new List<OrtValue>();
            var owned = new List<OrtValue>();
            foreach (var (name, meta) in _session.InputMetadata)
            {
                OrtValue value;
                if (name == "input_ids") owned.Add(value = OrtValue.CreateTensorValueFromMemory(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]));
                else if (name == "seqlens_k") owned.Add(value = OrtValue.CreateTensorValueFromMemory(new[] { total - 1 + lengthError }, [1]));
                else if (name == "total_sequence_length") owned.Add(value = OrtValue.CreateTensorValueFromMemory(new[] { total + lengthError }, []));
                else if (!_pasts.TryGetValue(name, out value!))
                    owned.Add(value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType,
                        [1, GqaExport.KvHeads, staticCache ?? 0, GqaExport.HeadSize]));
                names.Add(name);
                values.Add(value);
            }
            var outputNames = _session.OutputMetadata.Keys.ToList();
            using var runOptions = new RunOptions();
            var outputs = _session.Run(runOptions, names, values, outputNames);
            foreach (var value in owned) value.Dispose();
            var logits = outputs[outputNames.IndexOf("logits")].GetTensorDataAsSpan<float>().ToArray();
            var presents = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
            for (var i = 0; i < outputNames.Count; i++)
            {
                if (keep && outputNames[i].StartsWith("present.", StringComparison.Ordinal))
                    presents["past_key_values." + outputNames[i]["present.".Length..]] = outputs[i];
                else outputs[i].Dispose();
            }
            if (keep)
            {
                foreach (var old in _pasts.Values) old.Dispose();
                _pasts = presents;
            }
            return logits;
        }

        public void Dispose()
        {
            foreach (var value in _pasts.Values) value.Dispose();
            _session.Dispose();
        }
    }
}
