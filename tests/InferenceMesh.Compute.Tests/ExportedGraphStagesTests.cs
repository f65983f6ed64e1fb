using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Onnx;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests;

/// <summary>
/// The shared exports made by torch.onnx.export and the ONNX Runtime GenAI builder, split and chained stage by stage
/// on ONNX Runtime, against the unsplit file on ONNX Runtime: every output, KV included, over a prefill and 16 decode steps.
/// </summary>
public sealed class ExportedGraphStagesTests(ITestOutputHelper output)
{
    public static TheoryData<string, int> Splits() => new()
    {
        { "gpt2-torch-export", 2 }, { "gpt2-torch-export", 0 },
        { "llama-genai-builder-fp16", 2 }, { "llama-genai-builder-fp16", 0 },
    };

    public static TheoryData<string, int, bool> SplitsAndRewrites() => new()
    {
        { "gpt2-torch-export", 2, false }, { "gpt2-torch-export", 0, false },
        { "llama-genai-builder-fp16", 2, false }, { "llama-genai-builder-fp16", 0, false },
        { "llama-genai-builder-fp16", 2, true }, { "llama-genai-builder-fp16", 0, true },
    };

    [Theory]
    [MemberData(nameof(SplitsAndRewrites))]
    public void ChainedStagesEqualTheUnsplitExportOnOnnxRuntime(string which, int blockStages, bool unfuseSkipNorms)
    {
        var path = which.StartsWith("gpt2", StringComparison.Ordinal) ? TestModels.Gpt2TorchExport : TestModels.LlamaGenAiFp16;
        var directory = Path.GetDirectoryName(path)!;
        var model = OnnxModelFile.Load(path);
        var analysis = new GraphAnalysis(model, unfuseSkipNorms: unfuseSkipNorms);
        if (unfuseSkipNorms)
        {
            Assert.True(analysis.UnfusedSkipNorms >= analysis.BlockCount, $"only {analysis.UnfusedSkipNorms} skip-norms were rewritten");
            Assert.All(analysis.BoundaryTensors, crossing => Assert.Single(crossing));
        }
        var count = blockStages == 0 ? analysis.BlockCount : blockStages;
        var stages = GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, count));
        Assert.Equal(count + 2, stages.Count);
        var fp16 = model.Graph.Output.First(o => o.Name == analysis.FinalOutput).Type.TensorType.ElemType == (int)TensorProto.Types.DataType.Float16;
        var tolerance = fp16 ? 1e-3 : 1e-5;

        using var options = Options(directory);
        using var whole = new InferenceSession(path, options);
        var sessions = stages.Select(s => new InferenceSession(s.Model.ToByteArray(), options)).ToList();
        try
        {
            var wholeState = new Dictionary<string, float[]>(StringComparer.Ordinal);
            var wholePast = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
            var stagePast = new Dictionary<string, OrtValue>(StringComparer.Ordinal);
            var random = new Random(3);
            // Token ids below 20: the shrunk GPT-2 keeps 20 rows of its embedding.
            long[] prompt = Enumerable.Range(0, 6).Select(_ => (long)random.Next(2, 20)).ToArray();
            // torch's gpt2_past takes one token a step ([batch, 1]): its prefill goes token by token.
            var oneAStep = whole.InputMetadata[analysis.TokenInput].Dimensions[^1] == 1;
            var prefillSteps = oneAStep ? prompt.Length : 1;
            var tokens = oneAStep ? prompt[..1] : prompt;
            var position = 0;
            var maxDiff = 0.0;
            var boundaryBytes = new List<long>();
            // The shrunk GPT-2 keeps 8 rows of its position table: a session there lasts 8 positions, so it runs several.
            var context = model.Graph.Initializer.FirstOrDefault(t => t.Name.StartsWith("wpe.", StringComparison.Ordinal))?.Dims[0] ?? long.MaxValue;
            var decodeSteps = 0;
            for (var step = 0; decodeSteps < 16; step++)
            {
                if (position + tokens.Length > context)
                {
                    foreach (var value in wholePast.Values.Concat(stagePast.Values)) value.Dispose();
                    wholePast.Clear();
                    stagePast.Clear();
                    position = 0;
                    step = 0;
                    tokens = prompt[..1];
                }
                if (step >= prefillSteps) decodeSteps++;
                var expected = RunStage(whole, analysis.TokenInput, null, tokens, position, analysis.PastOf, wholePast);
                OrtValue? activation = null;
                var actual = new Dictionary<string, float[]>(StringComparer.Ordinal);
                for (var s = 0; s < stages.Count; s++)
                {
                    var d = stages[s].Descriptor;
                    var bindings = d.State.ToDictionary(b => b.Present, b => b.Past, StringComparer.Ordinal);
                    var results = RunStage(sessions[s], s == 0 ? analysis.TokenInput : d.ActivationInput, activation, tokens, position, bindings, stagePast, keepActivation: d.ActivationOutput);
                    activation?.Dispose();
                    activation = results.Activation;
                    if (boundaryBytes.Count < stages.Count - 1 && s + 1 < stages.Count)
                    {
                        var shape = activation!.GetTensorTypeAndShape();
                        boundaryBytes.Add(shape.Shape[^1] * (shape.ElementDataType == TensorElementType.Float16 ? 2 : 4));
                    }
                    foreach (var (name, values) in results.Values) actual[name] = values;
                }
                activation?.Dispose();
                foreach (var (name, values) in expected.Values)
                {
                    Assert.True(actual.TryGetValue(name, out var got), $"no stage computes '{name}'");
                    Assert.Equal(values.Length, got!.Length);
                    for (var i = 0; i < values.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(values[i] - got[i]));
                }
                position += tokens.Length;
                var final = expected.Values[analysis.FinalOutput];
                tokens = step + 1 < prefillSteps ? [prompt[step + 1]] : [fp16 ? ArgMax(final[^32000..]) : (long)random.Next(2, 20)];
            }
            output.WriteLine($"{which}{(unfuseSkipNorms ? $" ({analysis.UnfusedSkipNorms} skip-norms unfused)" : "")}: {analysis.BlockCount} blocks, {stages.Count} stages, bytes per position crossing each boundary: {string.Join(", ", boundaryBytes)}, max |diff| {maxDiff:g3} over {decodeSteps} decode steps");
            Assert.True(maxDiff <= tolerance, $"max abs difference {maxDiff} exceeds {tolerance}");
            foreach (var value in wholePast.Values.Concat(stagePast.Values)) value.Dispose();
        }
        finally
        {
            foreach (var session in sessions) session.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Splits))]
    public void StagePipelineOfOrtExecutorsGivesTheUnsplitOutput(string which, int blockStages)
    {
        var path = which.StartsWith("gpt2", StringComparison.Ordinal) ? TestModels.Gpt2TorchExport : TestModels.LlamaGenAiFp16;
        var directory = Path.GetDirectoryName(path)!;
        var model = OnnxModelFile.Load(path);
        var analysis = new GraphAnalysis(model);
        var count = blockStages == 0 ? analysis.BlockCount : blockStages;
        using var whole = new StagePipeline([new OrtStageExecutor(GraphSplitter.DescribeWhole(analysis, "model.onnx"), File.ReadAllBytes(path), null, directory)]);
        using var chained = new StagePipeline(GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, count))
            .Select(s => (IStageExecutor)new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray(), null, directory)).ToList());
        var oneAStep = which.StartsWith("gpt2", StringComparison.Ordinal);
        // gpt2_past takes one token a step and keeps 8 positions; the Llama takes a 6-token prefill then 16 decode steps.
        int[][] steps = oneAStep
            ? Enumerable.Range(0, 8).Select(i => new[] { 2 + (i * 7 % 18) }).ToArray()
            : [[1, 5, 9, 13, 17, 3], .. Enumerable.Range(0, 16).Select(i => new[] { 2 + (i * 11 % 18) })];
        var position = 0;
        var maxDiff = 0.0;
        foreach (var tokens in steps)
        {
            var a = whole.Forward("s", tokens, position);
            var b = chained.Forward("s", tokens, position);
            Assert.Equal(a.Type, b.Type);
            Assert.Equal(a.Shape, b.Shape);
            var x = Values(a);
            var y = Values(b);
            for (var i = 0; i < x.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(x[i] - y[i]));
            position += tokens.Length;
        }
        var tolerance = analysis.Model.Graph.Output.First(o => o.Name == analysis.FinalOutput).Type.TensorType.ElemType == (int)TensorProto.Types.DataType.Float16 ? 1e-3 : 1e-5;
        output.WriteLine($"{which} through StagePipeline, {count} block stages: max |diff| {maxDiff:g3}");
        Assert.True(maxDiff <= tolerance, $"max abs difference {maxDiff} exceeds {tolerance}");
        Assert.All(chained.Stages.Skip(1).SkipLast(1), s => Assert.Equal(position, s.CachedLength("s")));
    }

    private static float[] Values(TensorData tensor) => tensor.Type == DType.Float16
        ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(tensor.Bytes.Span).ToArray().Select(h => (float)h).ToArray()
        : tensor.AsFloats().ToArray();

    private static SessionOptions Options(string directory)
    {
        var options = new SessionOptions { IntraOpNumThreads = 1 };
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", directory);
        return options;
    }

    private static long ArgMax(float[] values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Runs one session: feeds tokens or the activation, context in the declared dtype, pasts (empty at first); keeps presents as the next pasts.</summary>
    private static (OrtValue? Activation, Dictionary<string, float[]> Values) RunStage(InferenceSession session, string activationName, OrtValue? activation,
        long[] tokens, int position, IReadOnlyDictionary<string, string> pastOf, Dictionary<string, OrtValue> pasts, string? keepActivation = null)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        var owned = new List<OrtValue>();
        var pastNames = pastOf.Values.ToHashSet(StringComparer.Ordinal);
        foreach (var (name, meta) in session.InputMetadata)
        {
            OrtValue value;
            if (name == activationName && activation is not null) value = activation;
            else if (pastNames.Contains(name))
                value = pasts.TryGetValue(name, out var past) ? past : Own(Empty(meta));
            else if (name == activationName) value = Own(Ints(meta.ElementDataType, [1, tokens.Length], i => tokens[i]));
            else if (name == "attention_mask") value = Own(Ints(meta.ElementDataType, [1, position + tokens.Length], _ => 1));
            else if (name == "position_ids") value = Own(Ints(meta.ElementDataType, [1, tokens.Length], i => position + i));
            else throw new InvalidOperationException($"no value for input '{name}'");
            names.Add(name);
            values.Add(value);
        }
        OrtValue Own(OrtValue v) { owned.Add(v); return v; }

        var outputNames = session.OutputMetadata.Keys.ToList();
        using var runOptions = new RunOptions();
        var outputs = session.Run(runOptions, names, values, outputNames);
        foreach (var v in owned) v.Dispose();
        var result = new Dictionary<string, float[]>(StringComparer.Ordinal);
        OrtValue? kept = null;
        for (var i = 0; i < outputNames.Count; i++)
        {
            var name = outputNames[i];
            var value = outputs[i];
            if (name == keepActivation) kept = value;
            result[name] = Floats(value);
            if (pastOf.TryGetValue(name, out var pastName))
            {
                if (pasts.Remove(pastName, out var old)) old.Dispose();
                pasts[pastName] = value;
            }
            else if (!ReferenceEquals(value, kept)) value.Dispose();
        }
        return (kept, result);
    }

    private static OrtValue Empty(NodeMetadata meta)
    {
        var firstSymbolic = Array.IndexOf(meta.Dimensions, -1);
        var shape = meta.Dimensions.Select((d, i) => d >= 0 ? (long)d : i == firstSymbolic ? 1L : 0L).ToArray();
        return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType, shape);
    }

    private static OrtValue Ints(TensorElementType type, long[] shape, Func<int, long> at)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
        if (type == TensorElementType.Int32)
        {
            var span = value.GetTensorMutableDataAsSpan<int>();
            for (var i = 0; i < span.Length; i++) span[i] = (int)at(i);
        }
        else
        {
            var span = value.GetTensorMutableDataAsSpan<long>();
            for (var i = 0; i < span.Length; i++) span[i] = at(i);
        }
        return value;
    }

    private static float[] Floats(OrtValue value) => value.GetTensorTypeAndShape().ElementDataType switch
    {
        TensorElementType.Float => value.GetTensorDataAsSpan<float>().ToArray(),
        TensorElementType.Float16 => value.GetTensorDataAsSpan<Float16>().ToArray().Select(h => h.ToFloat()).ToArray(),
        var other => throw new InvalidOperationException($"unexpected output type {other}"),
    };
}
