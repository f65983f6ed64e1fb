namespace InferenceMesh.Compute;

/// <summary>Runs tokens through a step function in steps no longer than a model takes (<see cref="Core.Manifest.MaxStepPositions"/>).</summary>
internal static class ChunkedSteps
{
    /// <summary>Runs <paramref name="tokens"/> from <paramref name="position"/> in consecutive steps of at most <paramref name="maxStepTokens"/>; the last step's scores.</summary>
    public static async ValueTask<float[]> RunAsync(Func<int[], int, CancellationToken, ValueTask<float[]>> step, int[] tokens, int position, int maxStepTokens, CancellationToken cancellation)
    {
        if (tokens.Length <= maxStepTokens) return await step(tokens, position, cancellation).ConfigureAwait(false);
        float[] scores = [];
        for (var offset = 0; offset < tokens.Length; offset += maxStepTokens)
        {
            var chunk = tokens[offset..Math.Min(tokens.Length, offset + maxStepTokens)];
            scores = await step(chunk, position + offset, cancellation).ConfigureAwait(false);
        }
        return scores;
    }
}
