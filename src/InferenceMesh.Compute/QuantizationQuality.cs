namespace InferenceMesh.Compute;

/// <summary>
/// How far a lossy model (e.g. quantized weights) is from its exact reference over a set of prompts, as
/// <c>ModelComparison.Compare</c> measures it. Positions are the reference's greedy continuations, fed to both models.
/// </summary>
/// <param name="Prompts">Prompts compared.</param>
/// <param name="Positions">Positions compared in all (each prompt's last position and every continued one).</param>
/// <param name="Top1Agreement">Fraction of positions where both models' most likely next token is the same (teacher-forced: both read the reference's tokens).</param>
/// <param name="GreedyPrefixAgreement">Mean fraction of each greedy continuation the candidate generates identically, free-running, before its first different token.</param>
/// <param name="MeanKl">Mean KL divergence KL(reference ‖ candidate) of the next-token distributions, in nats.</param>
/// <param name="MaxKl">The largest KL divergence at any position, in nats.</param>
/// <param name="MaxLogitError">The largest absolute difference of any logit at any position.</param>
/// <param name="MeanLogitError">Mean absolute difference of the logits over every position and vocabulary entry.</param>
public sealed record QuantizationQuality(int Prompts, int Positions, double Top1Agreement, double GreedyPrefixAgreement, double MeanKl, double MaxKl,
    double MaxLogitError, double MeanLogitError);
