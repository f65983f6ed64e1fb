namespace InferenceMesh.Client;

/// <summary>What one generation through the mesh produced and how it went.</summary>
/// <param name="Text">The text, prompt text first (as streamed).</param>
/// <param name="PromptTokens">Tokens of the prompt, BOS included.</param>
/// <param name="GeneratedTokens">Tokens sampled after the prompt (one per step; a final end-of-text token, which is not printed, included).</param>
/// <param name="Elapsed">From the session's opening to the last token.</param>
/// <param name="Route">The hops the session ended with (after any replacement), in block order.</param>
/// <param name="Recoveries">Servers this session replaced.</param>
/// <param name="Mode">How steps travelled.</param>
/// <param name="Completion">The generated text alone, after the prompt's.</param>
/// <param name="FinishReason">Whether the model stopped or the token budget ran out.</param>
/// <param name="Verification">Checks run, their cost and verdicts, over every restart; null where nothing reported it.</param>
/// <param name="TimeToFirstToken">From the generation's start (the session's opening included) to its first new token; null when none came.</param>
/// <param name="ActivationBytesReceived">Activation bytes the client received in the last attempt's session (<see cref="InferenceSession.ActivationBytesReceived"/>).</param>
public sealed record GenerationResult(string Text, int PromptTokens, int GeneratedTokens, TimeSpan Elapsed, IReadOnlyList<HopReport> Route, int Recoveries, RouteMode Mode,
    string Completion, FinishReason FinishReason, VerificationReport? Verification = null, TimeSpan? TimeToFirstToken = null, long ActivationBytesReceived = 0)
{
    /// <summary>New tokens per second over <see cref="Elapsed"/>.</summary>
    public double TokensPerSecond => GeneratedTokens / Math.Max(Elapsed.TotalSeconds, 1e-9);
}
