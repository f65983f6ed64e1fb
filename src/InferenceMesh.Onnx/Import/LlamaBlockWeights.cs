namespace InferenceMesh.Onnx.Import;

/// <summary>One transformer block's weights, each matrix row-major with the output dimension first (y = W·x), as llama2.c stores them.</summary>
public sealed record LlamaBlockWeights(
    float[] AttentionNorm, float[] Wq, float[] Wk, float[] Wv, float[] Wo,
    float[] FfnNorm, float[] W1, float[] W2, float[] W3);
