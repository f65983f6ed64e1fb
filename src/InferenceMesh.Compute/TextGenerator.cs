using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;

namespace InferenceMesh.Compute;

/// <summary>
/// The generation loop of llama2.c over any token-to-logits step function: the prompt is prefilled in one
/// step, then one token per step until <see cref="GenerationOptions.MaxTokens"/> new tokens, the context (or
/// <see cref="GenerationOptions.MaxPositions"/>) is full, or an end-of-text token (any EOS id of the tokenizer;
/// for llama2.c's tokenizer BOS too, as llama2.c stops; and any of <paramref name="stopIds"/>).
/// Text is yielded as soon as its UTF-8 is complete; the prompt's own text is yielded first.
/// </summary>
/// <param name="stopIds">More ids that end a generation: a chat template's end-of-turn token.</param>
/// <param name="decodeReplyAlone">Decode the first new token as the start of a text, as Hugging Face decodes a chat reply
/// on its own: a SentencePiece reply after <c>[/INST]</c> then does not begin with its word-marker space.</param>
/// <param name="maxStepTokens">The most tokens one step may carry (<see cref="Manifest.MaxStepPositions"/>): a longer prompt is prefilled in steps of that many.</param>
public sealed class TextGenerator(ITextTokenizer tokenizer, int maxSequence, IReadOnlySet<int>? stopIds = null, bool decodeReplyAlone = false, int maxStepTokens = int.MaxValue)
{
    /// <summary>
    /// Positions a generation may reach: the prompt plus <see cref="GenerationOptions.MaxTokens"/> (the token sampled at
    /// the last position is printed but never run, so that many tokens are printed), capped by the context and
    /// <see cref="GenerationOptions.MaxPositions"/>. A session is opened for this many positions.
    /// </summary>
    public static int PositionLimit(int promptTokens, GenerationOptions options, int maxSequence) =>
        Math.Min(Math.Min(promptTokens - 1 + options.MaxTokens, maxSequence), options.MaxPositions ?? int.MaxValue);

    /// <param name="step">Runs tokens at a start position and returns the last position's logits.</param>
    public IEnumerable<string> Generate(string prompt, GenerationOptions options, Func<int[], int, float[]> step) =>
        GenerateAsync(prompt, options, (tokens, start, _) => ValueTask.FromResult(step(tokens, start))).ToBlockingEnumerable();

    /// <summary>The prompt's tokens: BOS first where the tokenizer adds it, and BOS alone for an empty prompt where it has one.</summary>
    public static IReadOnlyList<int> EncodePrompt(ITextTokenizer tokenizer, string prompt)
    {
        var tokens = tokenizer.Encode(prompt, tokenizer.AddsBos || prompt.Length == 0);
        if (tokens.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "the prompt is empty and the tokenizer has no BOS token to start from");
        return tokens;
    }

    /// <param name="step">Runs tokens at a start position and returns the last position's logits; cancelled with the enumeration.</param>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options,
        Func<int[], int, CancellationToken, ValueTask<float[]>> step, CancellationToken cancellation = default) =>
        GenerateAsync(EncodePrompt(tokenizer, prompt), options, step, cancellation);

    /// <summary>Generates after prompt tokens already encoded (a rendered chat template); the prompt's text is yielded first, a leading BOS printing nothing.</summary>
    /// <param name="step">Runs tokens at a start position and returns the last position's logits; cancelled with the enumeration.</param>
    public async IAsyncEnumerable<string> GenerateAsync(IReadOnlyList<int> promptTokens, GenerationOptions options,
        Func<int[], int, CancellationToken, ValueTask<float[]>> step, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation = default)
    {
        if (promptTokens.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "the prompt has no tokens");
        var tokens = promptTokens.ToList();
        if (options.MaxTokens < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max tokens {options.MaxTokens} must be at least 1");
        if (options.MaxPositions is < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max positions {options.MaxPositions} must be at least 1");
        if (tokens.Count > maxSequence)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"the prompt is {tokens.Count} tokens; the model's context is {maxSequence}");
        var limit = PositionLimit(tokens.Count, options, maxSequence);
        var sampler = new Sampler(options.Temperature, options.TopP, options.Seed);
        var decoder = new StreamingTextDecoder();

        var first = tokens[0] == tokenizer.BosId ? 1 : 0;
        for (var i = first; i <= Math.Min(tokens.Count - 1, limit); i++)
        {
            var text = decoder.Append(tokenizer.DecodeBytes(i == 0 ? -1 : tokens[i - 1], tokens[i]));
            if (text.Length > 0) yield return text;
        }
        if (tokens.Count - 1 >= limit) yield break;

        // As in llama2.c, the token sampled at the last position is printed but never run.
        var position = 0;
        var pending = tokens.ToArray();
        while (true)
        {
            var logits = await ChunkedSteps.RunAsync(step, pending, position, maxStepTokens, cancellation).ConfigureAwait(false);
            position += pending.Length;
            var next = sampler.Sample(logits);
            if (options.StopAtEndOfText && (tokenizer.IsEndOfText(next) || stopIds?.Contains(next) == true)) yield break;
            var text = decoder.Append(tokenizer.DecodeBytes(decodeReplyAlone && tokens.Count == promptTokens.Count ? -1 : tokens[^1], next));
            tokens.Add(next);
            if (text.Length > 0) yield return text;
            if (position >= limit) yield break;
            pending = [next];
        }
    }
}
