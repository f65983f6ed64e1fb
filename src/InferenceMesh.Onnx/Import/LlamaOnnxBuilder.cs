using InferenceMesh.Core;
using Onnx;
using static InferenceMesh.Onnx.OnnxGraphBuilder;

namespace InferenceMesh.Onnx.Import;

/// <summary>
/// Writes a Llama decoder as an ONNX graph of standard operators (opset 17, no contrib ops), with
/// the KV-cache interface of Hugging Face Optimum's decoder exports: inputs <c>input_ids</c>,
/// <c>attention_mask</c>, <c>position_ids</c>, <c>past_key_values.{i}.key|value</c>; outputs
/// <c>logits</c>, <c>present.{i}.key|value</c>. Caches are <c>[batch, kv_heads, sequence, head_size]</c>.
/// </summary>
public static class LlamaOnnxBuilder
{
    public const long Opset = 17;
    public const string InputIds = "input_ids";
    public const string AttentionMask = "attention_mask";
    public const string PositionIds = "position_ids";
    public const string Logits = "logits";

    public static string PastKey(int layer) => $"past_key_values.{layer}.key";
    public static string PastValue(int layer) => $"past_key_values.{layer}.value";
    public static string PresentKey(int layer) => $"present.{layer}.key";
    public static string PresentValue(int layer) => $"present.{layer}.value";

    public static ModelProto Build(LlamaWeights weights, string name)
    {
        var c = weights.Config;
        LlamaWeights.Validate(c);
        var g = new OnnxGraphBuilder(name);
        g.Input(InputIds, DType.Int64, "batch", "sequence");
        g.Input(AttentionMask, DType.Int64, "batch", "total_sequence");
        g.Input(PositionIds, DType.Int64, "batch", "sequence");
        for (var l = 0; l < c.Layers; l++)
        {
            g.Input(PastKey(l), DType.Float32, "batch", c.KvHeads.ToString(), "past_sequence", c.HeadSize.ToString());
            g.Input(PastValue(l), DType.Float32, "batch", c.KvHeads.ToString(), "past_sequence", c.HeadSize.ToString());
        }
        g.Output(Logits, DType.Float32, "batch", "sequence", c.Vocab.ToString());
        for (var l = 0; l < c.Layers; l++)
        {
            g.Output(PresentKey(l), DType.Float32, "batch", c.KvHeads.ToString(), "total_sequence", c.HeadSize.ToString());
            g.Output(PresentValue(l), DType.Float32, "batch", c.KvHeads.ToString(), "total_sequence", c.HeadSize.ToString());
        }

        var embedding = g.Floats("embed_tokens.weight", weights.TokenEmbedding, c.Vocab, c.Dim);
        var x = g.Node("Gather", "inputs_embeds", [embedding, InputIds], Attr("axis", 0L));
        AnnotateHidden(g, x, c);

        var (cos, sin) = RotaryTables(g, c);
        var mask = CausalMask(g);
        for (var l = 0; l < c.Layers; l++)
        {
            x = Block(g, c, weights.Blocks[l], l, x, cos, sin, mask);
            AnnotateHidden(g, x, c);
        }

        var normed = RmsNorm(g, x, weights.FinalNorm, c.NormEpsilon, "norm");
        var classifier = weights.Classifier is null
            ? g.Node("Transpose", "lm_head.weight_t", [embedding], AttrInts("perm", 1L, 0L))
            : g.Floats("lm_head.weight_t", Transpose(weights.Classifier, c.Vocab, c.Dim), c.Dim, c.Vocab);
        g.NodeNamed("MatMul", Logits, [normed, classifier]);
        return g.ToModel(Opset, "inferencemesh");
    }

    /// <summary>cos/sin of position × inverse frequency, shaped <c>[batch, 1, sequence, head_size/2, 1]</c> to broadcast over heads and pairs.</summary>
    private static (string Cos, string Sin) RotaryTables(OnnxGraphBuilder g, ModelConfig c)
    {
        var half = c.HeadSize / 2;
        var inverseFrequency = new float[half];
        for (var j = 0; j < half; j++)
            inverseFrequency[j] = 1f / MathF.Pow(c.RopeTheta, 2 * j / (float)c.HeadSize);
        var positions = g.Node("Cast", "positions_f", [PositionIds], Attr("to", (long)DType.Float32));
        var column = g.Node("Unsqueeze", "positions_col", [positions, g.Int64s("axis_last", [-1], 1)]);
        var angles = g.Node("Mul", "rope_angles", [column, g.Floats("rope_inv_freq", inverseFrequency, half)]);
        var broadcastAxes = g.Int64s("rope_axes", [1, 4], 2);
        var cos = g.Node("Unsqueeze", "rope_cos", [g.Node("Cos", "rope_cos_raw", [angles]), broadcastAxes]);
        var sin = g.Node("Unsqueeze", "rope_sin", [g.Node("Sin", "rope_sin_raw", [angles]), broadcastAxes]);
        return (cos, sin);
    }

    /// <summary>An additive mask <c>[batch, 1, sequence, total_sequence]</c>: 0 where key position ≤ query position and the mask is 1, else −max.</summary>
    private static string CausalMask(OnnxGraphBuilder g)
    {
        var maskShape = g.Node("Shape", "mask_shape", [AttentionMask]);
        var total = g.Node("Gather", "total_sequence", [maskShape, g.ScalarInt64("one", 1)], Attr("axis", 0L));
        var keyPositions = g.Node("Range", "key_positions", [g.ScalarInt64("zero", 0), total, g.ScalarInt64("step", 1)]);
        var queryPositions = g.Node("Unsqueeze", "query_positions", [PositionIds, g.Int64s("mask_axes_q", [1, 3], 2)]);
        var causal = g.Node("LessOrEqual", "causal", [keyPositions, queryPositions]);
        var present = g.Node("Cast", "mask_present", [g.Node("Unsqueeze", "mask_keys", [AttentionMask, g.Int64s("mask_axes_k", [1, 2], 2)])], Attr("to", (long)DType.Bool));
        var allowed = g.Node("And", "allowed", [causal, present]);
        return g.Node("Where", "attention_bias", [allowed, g.ScalarFloat("zero_f", 0f), g.ScalarFloat("neg_max", float.MinValue)]);
    }

    private static string Block(OnnxGraphBuilder g, ModelConfig c, LlamaBlockWeights w, int layer, string x, string cos, string sin, string mask)
    {
        var p = $"layers.{layer}.";
        var h = RmsNorm(g, x, w.AttentionNorm, c.NormEpsilon, p + "input_layernorm");
        var q = Linear(g, h, w.Wq, c.Dim, c.Dim, p + "q_proj");
        var k = Linear(g, h, w.Wk, c.Dim, c.KvDim, p + "k_proj");
        var v = Linear(g, h, w.Wv, c.Dim, c.KvDim, p + "v_proj");
        var qHeads = SplitHeads(g, q, c.Heads, c.HeadSize, p + "q");
        var kHeads = SplitHeads(g, k, c.KvHeads, c.HeadSize, p + "k");
        var vHeads = SplitHeads(g, v, c.KvHeads, c.HeadSize, p + "v");
        qHeads = Rotate(g, qHeads, cos, sin, c.HeadSize, p + "q_rot");
        kHeads = Rotate(g, kHeads, cos, sin, c.HeadSize, p + "k_rot");

        g.NodeNamed("Concat", PresentKey(layer), [PastKey(layer), kHeads], Attr("axis", 2L));
        g.NodeNamed("Concat", PresentValue(layer), [PastValue(layer), vHeads], Attr("axis", 2L));
        var keys = RepeatKv(g, PresentKey(layer), c, p + "k_rep");
        var values = RepeatKv(g, PresentValue(layer), c, p + "v_rep");

        var keysT = g.Node("Transpose", p + "k_t", [keys], AttrInts("perm", 0L, 1L, 3L, 2L));
        var scores = g.Node("MatMul", p + "scores", [qHeads, keysT]);
        var scaled = g.Node("Div", p + "scores_scaled", [scores, g.ScalarFloat(p + "scale", MathF.Sqrt(c.HeadSize))]);
        var masked = g.Node("Add", p + "scores_masked", [scaled, mask]);
        var probabilities = g.Node("Softmax", p + "attn_probs", [masked], Attr("axis", -1L));
        var context = g.Node("MatMul", p + "attn_context", [probabilities, values]);
        var merged = g.Node("Transpose", p + "attn_merged_t", [context], AttrInts("perm", 0L, 2L, 1L, 3L));
        var flat = g.Node("Reshape", p + "attn_flat", [merged, g.Int64s(p + "flat_shape", [0, 0, c.Dim], 3)]);
        var attention = Linear(g, flat, w.Wo, c.Dim, c.Dim, p + "o_proj");
        var afterAttention = g.Node("Add", p + "attn_residual", [x, attention]);
        AnnotateHidden(g, afterAttention, c);

        var h2 = RmsNorm(g, afterAttention, w.FfnNorm, c.NormEpsilon, p + "post_attention_layernorm");
        var gate = Linear(g, h2, w.W1, c.Dim, c.HiddenDim, p + "gate_proj");
        var up = Linear(g, h2, w.W3, c.Dim, c.HiddenDim, p + "up_proj");
        var silu = g.Node("Mul", p + "silu", [gate, g.Node("Sigmoid", p + "gate_sigmoid", [gate])]);
        var gated = g.Node("Mul", p + "gated", [silu, up]);
        var down = Linear(g, gated, w.W2, c.HiddenDim, c.Dim, p + "down_proj");
        return g.Node("Add", p + "ffn_residual", [afterAttention, down]);
    }

    private static void AnnotateHidden(OnnxGraphBuilder g, string tensor, ModelConfig c) =>
        g.Annotate(tensor, DType.Float32, "batch", "sequence", c.Dim.ToString());

    /// <summary>x · (1 / sqrt(mean(x²) + eps)) · weight, in llama2.c's order of operations.</summary>
    private static string RmsNorm(OnnxGraphBuilder g, string x, float[] weight, float epsilon, string stem)
    {
        var square = g.Node("Mul", stem + ".sq", [x, x]);
        var mean = g.Node("ReduceMean", stem + ".mean", [square], AttrInts("axes", -1L), Attr("keepdims", 1L));
        var root = g.Node("Sqrt", stem + ".rms", [g.Node("Add", stem + ".mean_eps", [mean, g.ScalarFloat(stem + ".eps", epsilon)])]);
        var inverse = g.Node("Reciprocal", stem + ".inv_rms", [root]);
        var normalized = g.Node("Mul", stem + ".normalized", [x, inverse]);
        return g.Node("Mul", stem + ".out", [normalized, g.Floats(stem + ".weight", weight, weight.Length)]);
    }

    /// <summary>x · Wᵀ with W stored [out, in]; the initializer holds Wᵀ [in, out] so that MatMul applies it directly.</summary>
    private static string Linear(OnnxGraphBuilder g, string x, float[] w, int inFeatures, int outFeatures, string stem) =>
        g.Node("MatMul", stem + ".out", [x, g.Floats(stem + ".weight_t", Transpose(w, outFeatures, inFeatures), inFeatures, outFeatures)]);

    private static string SplitHeads(OnnxGraphBuilder g, string x, int heads, int headSize, string stem)
    {
        var shaped = g.Node("Reshape", stem + "_heads", [x, g.Int64s(stem + "_heads_shape", [0, 0, heads, headSize], 4)]);
        return g.Node("Transpose", stem + "_heads_t", [shaped], AttrInts("perm", 0L, 2L, 1L, 3L));
    }

    /// <summary>Rotates adjacent pairs (2i, 2i+1) of each head by the position's angles.</summary>
    private static string Rotate(OnnxGraphBuilder g, string x, string cos, string sin, int headSize, string stem)
    {
        var pairs = g.Node("Reshape", stem + "_pairs", [x, g.Int64s(stem + "_pairs_shape", [0, 0, 0, headSize / 2, 2], 5)]);
        var parts = g.NodeMulti("Split", [stem + "_re", stem + "_im"], [pairs, g.Int64s(stem + "_split", [1, 1], 2)], Attr("axis", -1L));
        var re = g.Node("Sub", stem + "_out_re", [g.Node("Mul", stem + "_re_cos", [parts[0], cos]), g.Node("Mul", stem + "_im_sin", [parts[1], sin])]);
        var im = g.Node("Add", stem + "_out_im", [g.Node("Mul", stem + "_re_sin", [parts[0], sin]), g.Node("Mul", stem + "_im_cos", [parts[1], cos])]);
        var joined = g.Node("Concat", stem + "_joined", [re, im], Attr("axis", -1L));
        return g.Node("Reshape", stem, [joined, g.Int64s(stem + "_shape", [0, 0, 0, headSize], 4)]);
    }

    /// <summary>Repeats each KV head for the query heads that share it (grouped-query attention).</summary>
    private static string RepeatKv(OnnxGraphBuilder g, string cache, ModelConfig c, string stem)
    {
        if (c.Heads == c.KvHeads) return cache;
        var group = c.Heads / c.KvHeads;
        var expanded = g.Node("Expand", stem + "_expanded",
            [g.Node("Unsqueeze", stem + "_unsq", [cache, g.Int64s(stem + "_axis", [2], 1)]), g.Int64s(stem + "_expand", [1, 1, group, 1, 1], 5)]);
        return g.Node("Reshape", stem, [expanded, g.Int64s(stem + "_shape", [0, c.Heads, -1, c.HeadSize], 4)]);
    }

    /// <summary>Row-major [rows, cols] → [cols, rows].</summary>
    public static float[] Transpose(float[] matrix, int rows, int cols)
    {
        var result = new float[matrix.Length];
        for (var r = 0; r < rows; r++)
            for (var col = 0; col < cols; col++)
                result[col * rows + r] = matrix[r * cols + col];
        return result;
    }
}
