using InferenceMesh.Core;
using InferenceMesh.Onnx;
using Onnx;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// A small decoder in the style of exports that hand ONNX Runtime's <c>GroupQueryAttention</c> its lengths as graph
/// inputs (<c>seqlens_k</c> int32 <c>[batch]</c>, <c>total_sequence_length</c> an int32 scalar) instead of deriving them
/// from a mask: embeddings, then per layer Q/K/V projections, GQA with rotary embedding (so a wrong length changes
/// the positions and the output), an output projection and a residual add, then an LM head.
/// With <paramref name="staticCache"/> the pasts have a fixed length and ONNX Runtime writes into them in place.
/// </summary>
public static class GqaExport
{
    public const int Vocab = 48;
    public const int Width = 64;
    public const int Heads = 4;
    public const int KvHeads = 2;
    public const int HeadSize = Width / Heads;
    public const int MaxPositions = 64;

    public static ModelProto Build(int layers, int seed, int? staticCache = null)
    {
        var random = new Random(seed);
        var g = new OnnxGraphBuilder("gqa_decoder");
        float[] Weights(int count, float scale) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        var pastLength = staticCache is { } s ? s.ToString(System.Globalization.CultureInfo.InvariantCulture) : "past_sequence_length";
        var presentLength = staticCache is { } p ? p.ToString(System.Globalization.CultureInfo.InvariantCulture) : "total_sequence_length";

        g.Input("input_ids", DType.Int64, "batch_size", "sequence_length");
        g.Input("seqlens_k", DType.Int32, "batch_size");
        g.Input("total_sequence_length", DType.Int32);
        var half = HeadSize / 2;
        var cos = new float[MaxPositions * half];
        var sin = new float[MaxPositions * half];
        for (var pos = 0; pos < MaxPositions; pos++)
            for (var i = 0; i < half; i++)
            {
                var angle = pos / Math.Pow(10000, 2.0 * i / HeadSize);
                cos[pos * half + i] = (float)Math.Cos(angle);
                sin[pos * half + i] = (float)Math.Sin(angle);
            }
        var cosCache = g.Floats("cos_cache", cos, MaxPositions, half);
        var sinCache = g.Floats("sin_cache", sin, MaxPositions, half);

        var x = g.Node("Gather", "embed", [g.Floats("embed_tokens", Weights(Vocab * Width, 0.5f), Vocab, Width), "input_ids"]);
        for (var layer = 0; layer < layers; layer++)
        {
            var q = g.Node("MatMul", $"layers.{layer}.q", [x, g.Floats($"layers.{layer}.q_proj", Weights(Width * Width, 0.2f), Width, Width)]);
            var k = g.Node("MatMul", $"layers.{layer}.k", [x, g.Floats($"layers.{layer}.k_proj", Weights(Width * KvHeads * HeadSize, 0.2f), Width, KvHeads * HeadSize)]);
            var v = g.Node("MatMul", $"layers.{layer}.v", [x, g.Floats($"layers.{layer}.v_proj", Weights(Width * KvHeads * HeadSize, 0.2f), Width, KvHeads * HeadSize)]);
            var pastKey = $"past_key_values.{layer}.key";
            var pastValue = $"past_key_values.{layer}.value";
            g.Input(pastKey, DType.Float32, "batch_size", $"{KvHeads}", pastLength, $"{HeadSize}");
            g.Input(pastValue, DType.Float32, "batch_size", $"{KvHeads}", pastLength, $"{HeadSize}");
            var attention = g.UniqueName($"layers.{layer}.attn");
            g.Graph.Node.Add(new NodeProto
            {
                OpType = "GroupQueryAttention",
                Domain = OnnxGraphBuilder.MicrosoftDomain,
                Name = attention,
                Input = { q, k, v, pastKey, pastValue, "seqlens_k", "total_sequence_length", cosCache, sinCache },
                Output = { attention + "_out", $"present.{layer}.key", $"present.{layer}.value" },
                Attribute =
                {
                    OnnxGraphBuilder.Attr("num_heads", (long)Heads),
                    OnnxGraphBuilder.Attr("kv_num_heads", (long)KvHeads),
                    OnnxGraphBuilder.Attr("do_rotary", 1L),
                },
            });
            g.Output($"present.{layer}.key", DType.Float32, "batch_size", $"{KvHeads}", presentLength, $"{HeadSize}");
            g.Output($"present.{layer}.value", DType.Float32, "batch_size", $"{KvHeads}", presentLength, $"{HeadSize}");
            var o = g.Node("MatMul", $"layers.{layer}.o", [attention + "_out", g.Floats($"layers.{layer}.o_proj", Weights(Width * Width, 0.2f), Width, Width)]);
            x = g.Node("Add", $"layers.{layer}.residual", [x, o]);
        }
        g.NodeNamed("MatMul", "logits", [x, g.Floats("lm_head", Weights(Width * Vocab, 0.3f), Width, Vocab)]);
        g.Output("logits", DType.Float32, "batch_size", "sequence_length", $"{Vocab}");
        return g.ToModel(17, "gqa-test-export");
    }
}
