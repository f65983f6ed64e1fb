namespace InferenceMesh.Compute.Ilgpu;

/// <summary>One recognised Llama block: its weights (matrices as MatMul B operands, <c>[in, out]</c>) and constants.</summary>
/// <param name="ScoreDivisor">Attention scores are divided by this (√headSize in a standard graph).</param>
/// <param name="PastKey">The graph input the block's key cache is appended to (for diagnostics; the executor keeps its own cache).</param>
public sealed record LlamaBlockPlan(
    float[] AttentionNorm, float AttentionEpsilon,
    float[] Wq, float[] Wk, float[] Wv, float[] Wo,
    float[] FfnNorm, float FfnEpsilon,
    float[] W1, float[] W2, float[] W3,
    float ScoreDivisor,
    string PastKey, string PastValue);
