using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;

namespace InferenceMesh.Compute;

/// <summary>
/// The generation loop of llama2.c over any token-to-logits step function: the prompt is prefilled in one
/// step, then one token per step until <see cref="GenerationOptions.MaxTokens"/> new tokens, the context (or
/// <see cref="GenerationOptions.MaxPositions"/>) is full, or BOS/EOS.
/// Text is yielded as soon as its UTF-8 is complete; the prompt's own text is yielded first.
/// </summary>
public sealed class TextGenerator(Llama2cTokenizer tokenizer, int maxSequence)
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

    /// <param name="step">Runs tokens at a start position and returns the last position's logits; cancelled with the enumeration.</param>
    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options,
        Func<int[], int, CancellationToken, ValueTask<float[]>> step, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var tokens = tokenizer.Encode(prompt, bos: true);
        if (options.MaxTokens < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max tokens {options.MaxTokens} must be at least 1");
        if (options.MaxPositions is < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max positions {options.MaxPositions} must be at least 1");
        if (tokens.Count > maxSequence)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"the prompt is {tokens.Count} tokens; the model's context is {maxSequence}");
        var limit = PositionLimit(tokens.Count, options, maxSequence);
        var sampler = new Sampler(options.Temperature, options.TopP, options.Seed);
        var decoder = new StreamingTextDecoder();

        for (var i = 1; i <= Math.Min(tokens.Count - 1, limit); i++)
        {
            var text = decoder.Append(tokenizer.DecodeBytes(tokens[i - 1], tokens[i]));
            if (text.Length > 0) yield return text;
        }
        if (tokens.Count - 1 >= limit) yield break;

        // As in llama2.c, the token sampled at the last position is printed but never run.
        var position = 0;
        var pending = tokens.ToArray();
        while (true)
        {
            var logits = await step(pending, position, cancellation).ConfigureAwait(false);
            position += pending.Length;
            var next = sampler.Sample(logits);
            if (options.StopAtEndOfText && next is Llama2cTokenizer.Bos or Llama2cTokenizer.Eos) yield break;
            var text = decoder.Append(tokenizer.DecodeBytes(tokens[^1], next));
            tokens.Add(next);
            if (text.Length > 0) yield return text;
            if (position >= limit) yield break;
            pending = [next];
        }
    }
}
