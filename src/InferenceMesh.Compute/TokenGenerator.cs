using System.Runtime.CompilerServices;
using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// The generation loop on token ids alone, for models driven without a tokenizer: the prompt is prefilled (in chunks
/// as long as the graph's token input allows: one at a time for exports that declare <c>[batch, 1]</c>), then one id
/// per step, sampled from the last position's scores, until <see cref="GenerationOptions.MaxTokens"/> new ids, the
/// context (or <see cref="GenerationOptions.MaxPositions"/>) is full, or one of <paramref name="stopIds"/> is sampled.
/// The ids it counts and stops by are those of <see cref="TextGenerator"/>, so the two agree on a model that has both.
/// </summary>
/// <param name="maxSequence">The model's context in positions.</param>
/// <param name="stopIds">Ids that end a generation (EOS); they are not yielded.</param>
/// <param name="maxStepTokens">The most tokens one step may carry (see <see cref="Manifest.MaxStepPositions"/>).</param>
public sealed class TokenGenerator(int maxSequence, IReadOnlySet<int> stopIds, int maxStepTokens = int.MaxValue)
{
    /// <summary>Yields the new ids (the prompt's are not repeated).</summary>
    /// <param name="step">Runs ids at a start position and returns the last position's scores as float32; cancelled with the enumeration.</param>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for an empty prompt, a negative id or bad limits; <see cref="MeshErrorCode.ContextOverflow"/> for a prompt longer than the context.</exception>
    public async IAsyncEnumerable<int> GenerateAsync(IReadOnlyList<int> prompt, GenerationOptions options, Func<int[], int, CancellationToken, ValueTask<float[]>> step,
        [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        if (prompt.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "the prompt has no token ids");
        // An id past the embedding is refused by the stage that reads it: an export without an LM head declares no vocabulary to check here.
        if (prompt.FirstOrDefault(id => id < 0) is var negative and < 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"token id {negative} is negative");
        if (options.MaxTokens < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max tokens {options.MaxTokens} must be at least 1");
        if (options.MaxPositions is < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max positions {options.MaxPositions} must be at least 1");
        if (prompt.Count > maxSequence)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"the prompt is {prompt.Count} tokens; the model's context is {maxSequence}");
        var limit = TextGenerator.PositionLimit(prompt.Count, options, maxSequence);
        if (prompt.Count - 1 >= limit) yield break;
        var sampler = new Sampler(options.Temperature, options.TopP, options.Seed);
        var position = 0;
        var pending = prompt.ToArray();
        while (true)
        {
            var scores = await ChunkedSteps.RunAsync(step, pending, position, maxStepTokens, cancellation).ConfigureAwait(false);
            position += pending.Length;
            var next = sampler.Sample(scores);
            if (options.StopAtEndOfText && stopIds.Contains(next)) yield break;
            yield return next;
            if (position >= limit) yield break;
            pending = [next];
        }
    }
}
