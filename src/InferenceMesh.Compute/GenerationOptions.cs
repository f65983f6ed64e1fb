namespace InferenceMesh.Compute;

/// <summary>Sampling settings for one generation.</summary>
/// <param name="MaxTokens">Positions in all, prompt included (llama2.c's "steps"); capped at the model's context.</param>
/// <param name="Temperature">0 = greedy.</param>
/// <param name="TopP">Nucleus mass in (0, 1); 0 or 1 samples from the whole distribution.</param>
/// <param name="StopAtEndOfText">Stop when the model emits BOS or EOS (llama2.c stops at BOS); benchmarks turn it off to run every position.</param>
public sealed record GenerationOptions(int MaxTokens = 256, float Temperature = 0f, float TopP = 0.9f, ulong Seed = 42, bool StopAtEndOfText = true);
