namespace InferenceMesh.Compute;

/// <summary>Sampling settings for one generation.</summary>
/// <param name="MaxTokens">New tokens to generate after the prompt (as OpenAI, llama.cpp and Ollama count them); capped at the model's context.</param>
/// <param name="Temperature">0 = greedy.</param>
/// <param name="TopP">Nucleus mass in (0, 1); 0 or 1 samples from the whole distribution.</param>
/// <param name="StopAtEndOfText">Stop when the model emits BOS or EOS (llama2.c stops at BOS); benchmarks turn it off to run every position.</param>
/// <param name="MaxPositions">Optional cap on positions in all, prompt included: llama2.c's <c>steps</c>, which reference outputs are made with.</param>
public sealed record GenerationOptions(int MaxTokens = 256, float Temperature = 0f, float TopP = 0.9f, ulong Seed = 42, bool StopAtEndOfText = true, int? MaxPositions = null);
