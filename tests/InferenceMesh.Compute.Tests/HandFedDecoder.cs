using Microsoft.ML.OnnxRuntime;

namespace InferenceMesh.Compute.Tests;

/// <summary>
/// An unsplit decoder file on ONNX Runtime whose context inputs the test computes itself (never the executors' code), so
/// stages can be checked against it: <c>input_ids</c> from the tokens, <c>past_key_values.*</c> from the previous step's
/// <c>present.*</c> (zeros of <paramref name="emptyPast"/> at first), every other input from <paramref name="context"/>
/// (name, cached positions, new positions).
/// </summary>
internal sealed class HandFedDecoder(byte[] model, long[] emptyPast, Func<string, int, int, OrtValue> context) : IDisposable
{
    private const string PastPrefix = "past_key_values.";
    private const string PresentPrefix = "present.";
    private readonly InferenceSession _session = new(model, new SessionOptions { IntraOpNumThreads = 1 });
    private Dictionary<string, OrtValue> _pasts = new(StringComparer.Ordinal);

    /// <summary>Runs one step and returns its logits; with <paramref name="keep"/> false the cache stays as it was.</summary>
    public float[] Run(int[] tokens, int position, bool keep = true)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        var owned = new List<OrtValue>();
        foreach (var (name, meta) in _session.InputMetadata)
        {
            OrtValue value;
            if (name == "input_ids") owned.Add(value = OrtValue.CreateTensorValueFromMemory(tokens.Select(t => (long)t).ToArray(), [1, tokens.Length]));
            else if (!name.StartsWith(PastPrefix, StringComparison.Ordinal)) owned.Add(value = context(name, position, tokens.Length));
            else if (!_pasts.TryGetValue(name, out value!))
            {
                owned.Add(value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType, emptyPast));
                value.GetTensorMutableDataAsSpan<byte>().Clear();
            }
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
            if (keep && outputNames[i].StartsWith(PresentPrefix, StringComparison.Ordinal))
                presents[PastPrefix + outputNames[i][PresentPrefix.Length..]] = outputs[i];
            else outputs[i].Dispose();
        }
        if (keep)
        {
            foreach (var old in _pasts.Values) old.Dispose();
            _pasts = presents;
        }
        return logits;
    }

    /// <summary>
    /// Runs <paramref name="prompt"/> then <paramref name="decodeSteps"/> greedy steps through this file and through
    /// <paramref name="chained"/> (session "s"), each fed this file's greedy token. <paramref name="probe"/>, when given, may
    /// run a step otherwise first (step index, tokens, position; without keeping its cache) and return its logits or null.
    /// Returns the largest logit difference between file and stages, the largest between a probe and the file, and the positions run.
    /// </summary>
    public (double MaxDiff, double MaxProbeEffect, int Positions) Compare(StagePipeline chained, int[] prompt, int decodeSteps, int vocab,
        Func<int, int[], int, float[]?>? probe = null)
    {
        var tokens = prompt;
        var position = 0;
        var maxDiff = 0.0;
        var maxProbeEffect = 0.0;
        for (var step = 0; step <= decodeSteps; step++)
        {
            var probed = probe?.Invoke(step, tokens, position);
            var expected = Run(tokens, position);
            using (var actual = chained.Forward("s", tokens, position))
            {
                var got = actual.AsFloats();
                Assert.Equal(expected.Length, got.Length);
                for (var i = 0; i < expected.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(expected[i] - got[i]));
            }
            for (var i = 0; i < (probed?.Length ?? 0); i++) maxProbeEffect = Math.Max(maxProbeEffect, Math.Abs(expected[i] - probed![i]));
            position += tokens.Length;
            tokens = [Sampler.ArgMax(expected.AsSpan(^vocab..))];
        }
        return (maxDiff, maxProbeEffect, position);
    }

    public void Dispose()
    {
        foreach (var value in _pasts.Values) value.Dispose();
        _session.Dispose();
    }
}
