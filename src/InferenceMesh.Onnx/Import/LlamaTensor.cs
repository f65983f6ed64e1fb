namespace InferenceMesh.Onnx.Import;

/// <summary>
/// The weights of a Llama-family decoder, by role. Matrices are [out, in] (y = W·x) as checkpoints store them;
/// vectors are read as one row. Query and key rows are in the interleaved pair order the graph rotates
/// ((2i, 2i+1) of each head), which is Meta's layout; Hugging Face's rotate-half layout is permuted back on reading.
/// </summary>
public enum LlamaTensor
{
    /// <summary>Token embedding [vocab, dim].</summary>
    Embedding,
    AttentionNorm,
    Query,
    Key,
    Value,
    Output,
    QueryBias,
    KeyBias,
    ValueBias,
    /// <summary>Per-head RMSNorm weight of the queries [head size] (Qwen 3).</summary>
    QueryNorm,
    /// <summary>Per-head RMSNorm weight of the keys [head size] (Qwen 3).</summary>
    KeyNorm,
    FfnNorm,
    /// <summary>SwiGLU gate (llama2.c's w1) [hidden, dim].</summary>
    Gate,
    /// <summary>SwiGLU down projection (w2) [dim, hidden].</summary>
    Down,
    /// <summary>SwiGLU up projection (w3) [hidden, dim].</summary>
    Up,
    FinalNorm,
    /// <summary>The LM head [vocab, dim]; absent when it shares the embedding.</summary>
    Classifier,
}
