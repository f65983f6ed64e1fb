namespace InferenceMesh.Compute;

/// <summary>
/// How well a model predicts text it was not built from, as <c>ModelComparison.Perplexity</c> measures it: every token after
/// the first of each sequence is predicted from the ones before it (teacher-forced, one prefill per sequence).
/// </summary>
/// <param name="Sequences">Sequences scored.</param>
/// <param name="Tokens">Tokens predicted in all (each sequence's length less one).</param>
/// <param name="MeanNll">Mean negative log-likelihood of a predicted token, in nats.</param>
/// <param name="Perplexity">exp(<paramref name="MeanNll"/>): the model's effective number of choices per token.</param>
public sealed record HeldOutPerplexity(int Sequences, int Tokens, double MeanNll, double Perplexity);
