using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests;

/// <summary>
/// A synthetic export in the style of Optimum's <c>decoder_model_merged.onnx</c> (standard operators, an <c>If</c> on
/// <c>use_cache_branch</c>): the splitter unmerges it to its with-past branch, and the stages equal the merged file run by
/// ONNX Runtime with <c>use_cache_branch = true</c>, every output (logits and KV), over a prefill and 16 decode steps.
/// </summary>
public sealed class OptimumMergedExportTests(ITestOutputHelper output)
{
    [Fact]
    public void MergedDecoderSplitIntoStagesEqualsTheMergedFileOnOnnxRuntime()
    {
        var merged = GraphMutations.OptimumMerged(OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile)));
        var analysis = new GraphAnalysis(merged);
        Assert.True(analysis.Unmerged);
        Assert.Equal(TestModels.SmallSyntheticConfig.Layers, analysis.BlockCount);
        Assert.DoesNotContain(analysis.Model.Graph.Input, i => i.Name == "use_cache_branch");
        var stages = GraphSplitter.Split(merged, analysis, BlockRange.SplitEvenly(analysis.BlockCount, 2));

        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var whole = new InferenceSession(merged.ToByteArray(), options);
        var sessions = stages.Select(s => new InferenceSession(s.Model.ToByteArray(), options)).ToList();
        var pasts = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        var stagePasts = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
        try
        {
            long[] tokens = [1, 20, 31, 42, 53];
            var position = 0;
            var maxDiff = 0.0;
            for (var step = 0; step <= 16; step++)
            {
                var expected = Run(whole, null, tokens, position, analysis.PastOf, pasts, useCacheBranch: true);
                OrtValue? activation = null;
                var actual = new Dictionary<string, float[]>(StringComparer.Ordinal);
                foreach (var (stage, session) in stages.Zip(sessions))
                {
                    var d = stage.Descriptor;
                    var results = Run(session, activation is null ? null : (d.ActivationInput, activation), tokens, position,
                        d.State.ToDictionary(b => b.Present, b => b.Past, StringComparer.Ordinal), stagePasts, keep: d.ActivationOutput);
                    activation?.Dispose();
                    activation = results.Kept;
                    foreach (var (name, values) in results.Values) actual[name] = values;
                }
                activation?.Dispose();
                Assert.Equal(expected.Values.Keys.Order(), actual.Keys.Intersect(expected.Values.Keys).Order());
                foreach (var (name, values) in expected.Values)
                    for (var i = 0; i < values.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(values[i] - actual[name][i]));
                position += tokens.Length;
                tokens = [Sampler.ArgMax(expected.Values["logits"].AsSpan(^TestModels.SmallSyntheticConfig.Vocab..))];
            }
            output.WriteLine($"merged decoder, {stages.Count} stages: max |diff| over logits and KV, prefill + 16 decode steps: {maxDiff:g3}");
            Assert.True(maxDiff <= 1e-5, $"max abs difference {maxDiff}");
        }
        finally
        {
            foreach (var value in pasts.Values.Concat(stagePasts.Values)) value.Dispose();
            foreach (var session in sessions) session.Dispose();
        }
    }

    /// <summary>One run: token ids or the given activation, mask and positions, pasts (empty at first); presents become the next pasts.</summary>
    private static (OrtValue? Kept, Dictionary<string, float[]> Values) Run(InferenceSession session, (string Name, OrtValue Value)? activation, long[] tokens, int position,
        IReadOnlyDictionary<string, string> pastOf, Dictionary<string, OrtValue> pasts, bool useCacheBranch = false, string? keep = null)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        var owned = new List<OrtValue>();
        var pastNames = pastOf.Values.ToHashSet(StringComparer.Ordinal);
        foreach (var (name, meta) in session.InputMetadata)
        {
            OrtValue value;
            if (activation is { } a && name == a.Name) value = a.Value;
            else if (pastNames.Contains(name))
            {
                if (!pasts.TryGetValue(name, out value!))
                {
                    var shape = meta.Dimensions.Select((d, i) => d >= 0 ? (long)d : i == 0 ? 1L : 0L).ToArray();
                    owned.Add(value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType, shape));
                }
            }
            else if (name == "use_cache_branch" && useCacheBranch) owned.Add(value = OrtValue.CreateTensorValueFromMemory(new[] { true }, [1]));
            else if (name == "input_ids") owned.Add(value = OrtValue.CreateTensorValueFromMemory(tokens.ToArray(), [1, tokens.Length]));
            else if (name == "attention_mask") owned.Add(value = OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, position + tokens.Length).ToArray(), [1, position + tokens.Length]));
            else if (name == "position_ids") owned.Add(value = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(position, tokens.Length).Select(p => (long)p).ToArray(), [1, tokens.Length]));
            else throw new InvalidOperationException($"no value for input '{name}'");
            names.Add(name);
            values.Add(value);
        }
        var outputNames = session.OutputMetadata.Keys.ToList();
        using var runOptions = new RunOptions();
        var outputs = session.Run(runOptions, names, values, outputNames);
        foreach (var value in owned) value.Dispose();
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        OrtValue? kept = null;
        for (var i = 0; i < outputNames.Count; i++)
        {
            if (outputNames[i] == keep) kept = outputs[i];
            if (outputs[i].GetTensorTypeAndShape().ElementDataType == TensorElementType.Float) result[outputNames[i]] = outputs[i].GetTensorDataAsSpan<float>().ToArray();
            if (pastOf.TryGetValue(outputNames[i], out var past))
            {
                if (pasts.Remove(past, out var old)) old.Dispose();
                pasts[past] = outputs[i];
            }
            else if (!ReferenceEquals(outputs[i], kept)) outputs[i].Dispose();
        }
        return (kept, result);
    }
}
