using InferenceMesh.Core;
using InferenceMesh.Onnx;
using Onnx;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// A small decoder with a static cache in standard operators, in the style of transformers' static-cache exports: each
/// layer's pasts have a fixed length <see cref="CacheLength"/>; the new keys and values are written at the positions
/// <c>cache_position</c> gives (<c>ScatterElements</c>), and attention reads the whole buffer with the fixed-length
/// <c>attention_mask</c> turned into a bias (0 for a filled slot, −10⁹ for an empty one). One head, no rotary.
/// </summary>
public static class StaticCacheExport
{
    public const int Vocab = 40;
    public const int Width = 32;
    public const int CacheLength = 24;

    public static ModelProto Build(int layers, int seed)
    {
        var random = new Random(seed);
        var g = new OnnxGraphBuilder("static_cache_decoder");
        float[] Weights(int count, float scale) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        var length = CacheLength.ToString(System.Globalization.CultureInfo.InvariantCulture);
        g.Input("input_ids", DType.Int64, "batch_size", "sequence_length");
        g.Input("attention_mask", DType.Int64, "batch_size", length);
        g.Input("cache_position", DType.Int64, "sequence_length");

        var maskFloat = g.Node("Cast", "mask_float", ["attention_mask"], OnnxGraphBuilder.Attr("to", (long)TensorProto.Types.DataType.Float));
        var empty = g.Node("Sub", "mask_empty", [g.ScalarFloat("one", 1f), maskFloat]);
        var bias = g.Node("Mul", "mask_bias", [empty, g.ScalarFloat("minus_big", -1e9f)]);
        var biasRow = g.Node("Unsqueeze", "mask_bias_row", [bias, g.Int64s("axis1", [1], 1)]);
        var positions = g.Node("Unsqueeze", "positions", ["cache_position", g.Int64s("axes01", [0, 2], 2)]);

        var x = g.Node("Gather", "embed", [g.Floats("embed_tokens", Weights(Vocab * Width, 0.5f), Vocab, Width), "input_ids"]);
        for (var layer = 0; layer < layers; layer++)
        {
            var q = g.Node("MatMul", $"l{layer}.q", [x, g.Floats($"l{layer}.wq", Weights(Width * Width, 0.3f), Width, Width)]);
            var k = g.Node("MatMul", $"l{layer}.k", [x, g.Floats($"l{layer}.wk", Weights(Width * Width, 0.3f), Width, Width)]);
            var v = g.Node("MatMul", $"l{layer}.v", [x, g.Floats($"l{layer}.wv", Weights(Width * Width, 0.3f), Width, Width)]);
            var indices = g.Node("Expand", $"l{layer}.indices", [positions, g.Node("Shape", $"l{layer}.k_shape", [k])]);
            var pastKey = $"past_key_values.{layer}.key";
            var pastValue = $"past_key_values.{layer}.value";
            g.Input(pastKey, DType.Float32, "batch_size", length, $"{Width}");
            g.Input(pastValue, DType.Float32, "batch_size", length, $"{Width}");
            g.NodeNamed("ScatterElements", $"present.{layer}.key", [pastKey, indices, k], OnnxGraphBuilder.Attr("axis", 1L));
            g.NodeNamed("ScatterElements", $"present.{layer}.value", [pastValue, indices, v], OnnxGraphBuilder.Attr("axis", 1L));
            g.Output($"present.{layer}.key", DType.Float32, "batch_size", length, $"{Width}");
            g.Output($"present.{layer}.value", DType.Float32, "batch_size", length, $"{Width}");
            var keysT = g.Node("Transpose", $"l{layer}.kT", [$"present.{layer}.key"], OnnxGraphBuilder.AttrInts("perm", 0, 2, 1));
            var scores = g.Node("MatMul", $"l{layer}.scores", [q, keysT]);
            var scaled = g.Node("Mul", $"l{layer}.scaled", [scores, g.ScalarFloat($"l{layer}.scale", 1f / MathF.Sqrt(Width))]);
            var masked = g.Node("Add", $"l{layer}.masked", [scaled, biasRow]);
            var weights = g.Node("Softmax", $"l{layer}.weights", [masked], OnnxGraphBuilder.Attr("axis", -1L));
            var attended = g.Node("MatMul", $"l{layer}.attended", [weights, $"present.{layer}.value"]);
            var o = g.Node("MatMul", $"l{layer}.o", [attended, g.Floats($"l{layer}.wo", Weights(Width * Width, 0.3f), Width, Width)]);
            x = g.Node("Add", $"l{layer}.residual", [x, o]);
        }
        g.NodeNamed("MatMul", "logits", [x, g.Floats("lm_head", Weights(Width * Vocab, 0.3f), Width, Vocab)]);
        g.Output("logits", DType.Float32, "batch_size", "sequence_length", $"{Vocab}");
        return g.ToModel(17, "static-cache-test-export");
    }
}
