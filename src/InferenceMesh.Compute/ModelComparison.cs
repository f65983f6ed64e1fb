using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>Measures a lossy model against its exact reference (<see cref="QuantizationQuality"/>), in one process.</summary>
public static class ModelComparison
{
    /// <summary>
    /// For each prompt: the reference's greedy continuation of <paramref name="newTokens"/> tokens (end of text not stopping it),
    /// then the prompt and continuation run through both models in one prefill each, comparing the logits at every position that
    /// predicts a continued token; and the candidate's own free-running greedy continuation, compared token by token.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the models' vocabularies differ, no prompt is given or a prompt is empty.</exception>
    public static QuantizationQuality Compare(LocalModel reference, LocalModel candidate, IReadOnlyList<IReadOnlyList<int>> prompts, int newTokens)
    {
        if (reference.Config.Vocab != candidate.Config.Vocab)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"the models' vocabularies differ ({reference.Config.Vocab} and {candidate.Config.Vocab})");
        if (prompts.Count == 0 || prompts.Any(p => p.Count == 0) || newTokens < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, "compare over at least one non-empty prompt and one new token");
        var greedy = new GenerationOptions(newTokens, 0f, StopAtEndOfText: false);
        long positions = 0, agreeing = 0, logitCount = 0;
        double klSum = 0, klMax = 0, errorMax = 0, errorSum = 0, prefixSum = 0;
        var vocab = reference.Config.Vocab;
        foreach (var prompt in prompts)
        {
            var continuation = reference.GenerateIds(prompt, greedy).ToList();
            var own = candidate.GenerateIds(prompt, greedy).ToList();
            var same = 0;
            while (same < continuation.Count && same < own.Count && continuation[same] == own[same]) same++;
            prefixSum += continuation.Count == 0 ? 1 : (double)same / continuation.Count;

            var sequence = prompt.Concat(continuation).ToArray();
            var expected = Logits(reference, sequence);
            var actual = Logits(candidate, sequence);
            for (var p = prompt.Count - 1; p < sequence.Length - 1; p++)
            {
                var r = expected.AsSpan(p * vocab, vocab);
                var c = actual.AsSpan(p * vocab, vocab);
                positions++;
                if (ArgMax(r) == ArgMax(c)) agreeing++;
                var kl = KlDivergence(r, c);
                klSum += kl;
                klMax = Math.Max(klMax, kl);
                for (var v = 0; v < vocab; v++)
                {
                    var error = Math.Abs((double)r[v] - c[v]);
                    errorMax = Math.Max(errorMax, error);
                    errorSum += error;
                }
                logitCount += vocab;
            }
        }
        return new QuantizationQuality(prompts.Count, (int)positions, (double)agreeing / positions, prefixSum / prompts.Count, klSum / positions, klMax,
            errorMax, errorSum / logitCount);
    }

    /// <summary><see cref="Compare(LocalModel, LocalModel, IReadOnlyList{IReadOnlyList{int}}, int)"/> over text prompts, encoded with the reference's tokenizer.</summary>
    public static QuantizationQuality Compare(LocalModel reference, LocalModel candidate, IReadOnlyList<string> prompts, int newTokens) =>
        Compare(reference, candidate, prompts.Select(p => TextGenerator.EncodePrompt(reference.Tokenizer, p)).ToList(), newTokens);

    /// <summary>
    /// The perplexity of <paramref name="model"/> on <paramref name="sequences"/> of token ids (each run as one prefill in a fresh
    /// session): exp of the mean negative log-likelihood of every token after each sequence's first.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when no sequence has two tokens, or one is longer than the model's context.</exception>
    public static HeldOutPerplexity Perplexity(LocalModel model, IReadOnlyList<IReadOnlyList<int>> sequences)
    {
        var scored = sequences.Where(s => s.Count >= 2).ToList();
        if (scored.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "perplexity needs at least one sequence of two or more tokens");
        if (scored.FirstOrDefault(s => s.Count > model.Config.MaxSequence) is { } tooLong)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"a sequence of {tooLong.Count} tokens is longer than the model's context of {model.Config.MaxSequence}");
        var vocab = model.Config.Vocab;
        double nll = 0;
        long tokens = 0;
        foreach (var sequence in scored)
        {
            var ids = sequence.ToArray();
            var logits = Logits(model, ids);
            for (var p = 0; p < ids.Length - 1; p++)
            {
                nll -= LogSoftmax(logits.AsSpan(p * vocab, vocab))[ids[p + 1]];
                tokens++;
            }
        }
        return new HeldOutPerplexity(scored.Count, (int)tokens, nll / tokens, Math.Exp(nll / tokens));
    }

    /// <summary><see cref="Perplexity(LocalModel, IReadOnlyList{IReadOnlyList{int}})"/> over texts, each encoded with the model's tokenizer as a prompt is (BOS first where the tokenizer adds one).</summary>
    public static HeldOutPerplexity Perplexity(LocalModel model, IReadOnlyList<string> texts) =>
        Perplexity(model, texts.Select(t => TextGenerator.EncodePrompt(model.Tokenizer, t)).ToList());

    /// <summary>KL(p ‖ q) of the softmax distributions of two logit rows, in nats.</summary>
    public static double KlDivergence(ReadOnlySpan<float> p, ReadOnlySpan<float> q)
    {
        var logP = LogSoftmax(p);
        var logQ = LogSoftmax(q);
        double sum = 0;
        for (var i = 0; i < logP.Length; i++) sum += Math.Exp(logP[i]) * (logP[i] - logQ[i]);
        return Math.Max(0, sum);
    }

    private static double[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (var l in logits) max = Math.Max(max, l);
        double sum = 0;
        foreach (var l in logits) sum += Math.Exp(l - max);
        var logSum = max + Math.Log(sum);
        var result = new double[logits.Length];
        for (var i = 0; i < result.Length; i++) result[i] = logits[i] - logSum;
        return result;
    }

    private static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>The logits of every position of <paramref name="tokens"/>, run as one prefill in a fresh session.</summary>
    private static float[] Logits(LocalModel model, int[] tokens)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        try
        {
            using var logits = model.Pipeline.Forward(sessionId, tokens, 0);
            return logits.ToFloatArray();
        }
        finally
        {
            model.Pipeline.CloseSession(sessionId);
        }
    }
}
