using System.Runtime.InteropServices;
using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Quantization;
using Onnx;
using static InferenceMesh.Onnx.OnnxGraphBuilder;

namespace InferenceMesh.Onnx.Import;

/// <summary>
/// Writes a Llama decoder as an ONNX graph of standard operators (opset 17; contrib ops only for quantized weights), with
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

    /// <summary>
    /// Metadata key of the graphs written here: their attention takes a past padded at its end (zeros, marked 0 in
    /// <c>attention_mask</c>), and the value is the block, in positions, that an executor pads every past to a multiple
    /// of. With every past padded so, a session's row computes the same bits whatever the other rows of its batch hold
    /// (ONNX Runtime's softmax and products sum in blocks that divide it; measured in <c>RunBatchTests</c>), so sessions
    /// at different positions can share a run.
    /// </summary>
    public const string PastPaddingKey = "inferencemesh.past_padding";

    /// <summary>The block pasts are padded to a multiple of (the value of <see cref="PastPaddingKey"/>), in positions.</summary>
    public const int PastPadding = 16;

    /// <summary>Rows read from a weight source at a time when transposing a matrix: bounds the reading buffer.</summary>
    private const int BandBytes = 8 << 20;

    public static ModelProto Build(ILlamaWeightSource weights, string name, LlamaBuildOptions? options = null)
    {
        var c = weights.Config;
        LlamaWeights.Validate(c);
        options ??= new LlamaBuildOptions();
        if (options.WeightType is not (DType.Float32 or DType.Float16))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"weights can be stored as float32 or float16, not {options.WeightType}");
        if (options.Quantization is { } quantization)
        {
            quantization.Validate();
            if (options.WeightType != DType.Float32)
                throw new MeshException(MeshErrorCode.InvalidArgument, "quantized weights are made from float32 ones: give float32 as the weight type");
        }
        var w = new Weights(new OnnxGraphBuilder(name), weights, options);
        var g = w.Graph;
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

        var embedding = w.Embedding("embed_tokens.weight");
        var x = g.Node("Gather", "inputs_embeds", [embedding, InputIds], Attr("axis", 0L));
        if (options.WeightType != DType.Float32) x = g.Node("Cast", "inputs_embeds_f", [x], Attr("to", (long)DType.Float32));
        AnnotateHidden(g, x, c);

        var (cos, sin) = RotaryTables(g, c);
        var mask = CausalMask(g);
        for (var l = 0; l < c.Layers; l++)
        {
            x = Block(w, c, l, x, cos, sin, mask);
            AnnotateHidden(g, x, c);
        }

        var normed = RmsNorm(g, x, weights.ReadVector(LlamaTensor.FinalNorm, 0), c.NormEpsilon, "norm");
        string classifier;
        if (weights.Has(LlamaTensor.Classifier) && options.Quantization is not null)
        {
            w.QuantizedLinear(normed, LlamaTensor.Classifier, 0, "lm_head", Logits);
            return Finish(g);
        }
        if (weights.Has(LlamaTensor.Classifier))
            classifier = w.Matrix(LlamaTensor.Classifier, 0, "lm_head.weight_t");
        else
        {
            var table = options.WeightType == DType.Float32 ? embedding : g.Node("Cast", "embed_tokens.weight_f", [embedding], Attr("to", (long)DType.Float32));
            classifier = g.Node("Transpose", "lm_head.weight_t", [table], AttrInts("perm", 1L, 0L));
        }
        g.NodeNamed("MatMul", Logits, [normed, classifier]);
        return Finish(g);
    }

    private static ModelProto Finish(OnnxGraphBuilder g)
    {
        var model = g.ToModel(Opset, "inferencemesh");
        model.MetadataProps.Add(new StringStringEntryProto { Key = PastPaddingKey, Value = PastPadding.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        return model;
    }

    /// <summary>cos/sin of position × inverse frequency, shaped <c>[batch, 1, sequence, head_size/2, 1]</c> to broadcast over heads and pairs.</summary>
    private static (string Cos, string Sin) RotaryTables(OnnxGraphBuilder g, ModelConfig c)
    {
        var inverseFrequency = c.RotaryInverseFrequencies();
        var positions = g.Node("Cast", "positions_f", [PositionIds], Attr("to", (long)DType.Float32));
        var column = g.Node("Unsqueeze", "positions_col", [positions, g.Int64s("axis_last", [-1], 1)]);
        var angles = g.Node("Mul", "rope_angles", [column, g.Floats("rope_inv_freq", inverseFrequency, inverseFrequency.Length)]);
        var broadcastAxes = g.Int64s("rope_axes", [1, 4], 2);
        var cos = g.Node("Unsqueeze", "rope_cos", [g.Node("Cos", "rope_cos_raw", [angles]), broadcastAxes]);
        var sin = g.Node("Unsqueeze", "rope_sin", [g.Node("Sin", "rope_sin_raw", [angles]), broadcastAxes]);
        return (cos, sin);
    }

    /// <summary>
    /// An additive mask <c>[batch, 1, sequence, total_sequence]</c>: 0 where the key is a past one or a new one at or before
    /// the query, and the mask is 1; else −max. Causality among the new keys is by their index after the past, not by
    /// position id, so a past padded at its end (zeros marked 0 in <c>attention_mask</c>) keeps every key where it was.
    /// </summary>
    private static string CausalMask(OnnxGraphBuilder g)
    {
        var maskShape = g.Node("Shape", "mask_shape", [AttentionMask]);
        var total = g.Node("Gather", "total_sequence", [maskShape, g.ScalarInt64("one", 1)], Attr("axis", 0L));
        var idsShape = g.Node("Shape", "ids_shape", [PositionIds]);
        var steps = g.Node("Gather", "step_sequence", [idsShape, g.ScalarInt64("one_s", 1)], Attr("axis", 0L));
        var pastLength = g.Node("Sub", "past_sequence", [total, steps]);
        var keyIndex = g.Node("Range", "key_index", [g.ScalarInt64("zero", 0), total, g.ScalarInt64("step", 1)]);
        var queryIndex = g.Node("Unsqueeze", "query_index", [g.Node("Range", "query_index_row", [g.ScalarInt64("zero_q", 0), steps, g.ScalarInt64("step_q", 1)]), g.Int64s("mask_axes_q", [1], 1)]);
        var isPast = g.Node("Less", "key_is_past", [keyIndex, pastLength]);
        var newNotAfter = g.Node("LessOrEqual", "key_not_after", [g.Node("Sub", "key_new_index", [keyIndex, pastLength]), queryIndex]);
        var causal = g.Node("Or", "causal", [isPast, newNotAfter]);
        var present = g.Node("Cast", "mask_present", [g.Node("Unsqueeze", "mask_keys", [AttentionMask, g.Int64s("mask_axes_k", [1, 2], 2)])], Attr("to", (long)DType.Bool));
        var allowed = g.Node("And", "allowed", [causal, present]);
        return g.Node("Where", "attention_bias", [allowed, g.ScalarFloat("zero_f", 0f), g.ScalarFloat("neg_max", float.MinValue)]);
    }

    private static string Block(Weights w, ModelConfig c, int layer, string x, string cos, string sin, string mask)
    {
        var g = w.Graph;
        var p = $"layers.{layer}.";
        var h = RmsNorm(g, x, w.Source.ReadVector(LlamaTensor.AttentionNorm, layer), c.NormEpsilon, p + "input_layernorm");
        var q = w.Linear(h, LlamaTensor.Query, LlamaTensor.QueryBias, layer, p + "q_proj");
        var k = w.Linear(h, LlamaTensor.Key, LlamaTensor.KeyBias, layer, p + "k_proj");
        var v = w.Linear(h, LlamaTensor.Value, LlamaTensor.ValueBias, layer, p + "v_proj");
        var qHeads = SplitHeads(g, q, c.Heads, c.HeadSize, p + "q");
        var kHeads = SplitHeads(g, k, c.KvHeads, c.HeadSize, p + "k");
        var vHeads = SplitHeads(g, v, c.KvHeads, c.HeadSize, p + "v");
        if (c.QkNorm)
        {
            qHeads = RmsNorm(g, qHeads, w.Source.ReadVector(LlamaTensor.QueryNorm, layer), c.NormEpsilon, p + "q_norm");
            kHeads = RmsNorm(g, kHeads, w.Source.ReadVector(LlamaTensor.KeyNorm, layer), c.NormEpsilon, p + "k_norm");
        }
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
        var flat = g.Node("Reshape", p + "attn_flat", [merged, g.Int64s(p + "flat_shape", [0, 0, c.QueryDim], 3)]);
        var attention = w.Linear(flat, LlamaTensor.Output, null, layer, p + "o_proj");
        var afterAttention = g.Node("Add", p + "attn_residual", [x, attention]);
        AnnotateHidden(g, afterAttention, c);

        var h2 = RmsNorm(g, afterAttention, w.Source.ReadVector(LlamaTensor.FfnNorm, layer), c.NormEpsilon, p + "post_attention_layernorm");
        var gate = w.Linear(h2, LlamaTensor.Gate, null, layer, p + "gate_proj");
        var up = w.Linear(h2, LlamaTensor.Up, null, layer, p + "up_proj");
        var silu = g.Node("Mul", p + "silu", [gate, g.Node("Sigmoid", p + "gate_sigmoid", [gate])]);
        var gated = g.Node("Mul", p + "gated", [silu, up]);
        var down = w.Linear(gated, LlamaTensor.Down, null, layer, p + "down_proj");
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

    /// <summary>
    /// Turns source tensors into initializers: matrices transposed to [in, out] (so each projection is one MatMul),
    /// read a band of rows at a time, stored as <see cref="LlamaBuildOptions.WeightType"/> inline or in the external file.
    /// </summary>
    private sealed class Weights(OnnxGraphBuilder graph, ILlamaWeightSource source, LlamaBuildOptions options)
    {
        // One buffer for every matrix, grown to the largest: peak memory stays one tensor (plus a band), not the garbage of many.
        private float[]? _scratch;
        private float[]? _band;

        public OnnxGraphBuilder Graph => graph;
        public ILlamaWeightSource Source => source;

        /// <summary>x · Wᵀ (+ bias when the model has <paramref name="bias"/>).</summary>
        public string Linear(string x, LlamaTensor matrix, LlamaTensor? bias, int layer, string stem)
        {
            var product = options.Quantization is null
                ? graph.Node("MatMul", stem + ".out", [x, Matrix(matrix, layer, stem + ".weight_t")])
                : QuantizedLinear(x, matrix, layer, stem, null);
            if (bias is not { } b || !source.Has(b)) return product;
            var values = source.ReadVector(b, layer);
            return graph.Node("Add", stem + ".biased", [product, graph.Floats(stem + ".bias", values, values.Length)]);
        }

        /// <summary>
        /// x · Wᵀ as <c>com.microsoft.MatMulNBits</c> over <see cref="LlamaBuildOptions.Quantization"/>'s blocks. The source's rows
        /// (one per output) are already <c>MatMulNBits</c>'s columns, so nothing is transposed. <paramref name="outputName"/>, when
        /// given, is the exact output name (a graph output); otherwise one is made from <paramref name="stem"/>.
        /// </summary>
        public string QuantizedLinear(string x, LlamaTensor tensor, int layer, string stem, string? outputName)
        {
            var quantization = options.Quantization!;
            var bits = quantization.Bits;
            var blockSize = quantization.BlockSize;
            var (n, k) = LlamaTensorShapes.Of(source.Config, tensor);
            var blocks = BlockQuantizer.Blocks(k, blockSize);
            var blob = BlockQuantizer.BlobBytes(blockSize, bits);
            var zeroPointBytes = BlockQuantizer.ZeroPointBytes(k, blockSize, bits);
            var codes = new byte[(long)n * blocks * blob];
            var scales = new float[(long)n * blocks];
            var zeroPoints = new byte[(long)n * zeroPointBytes];
            var band = Math.Max(1, BandBytes / (k * sizeof(float)));
            _band ??= new float[BandBytes / sizeof(float) + k];
            for (var start = 0; start < n; start += band)
            {
                var count = Math.Min(band, n - start);
                source.ReadRows(tensor, layer, start, count, _band.AsSpan(0, count * k));
                for (var r = 0; r < count; r++)
                {
                    var column = start + r;
                    BlockQuantizer.QuantizeColumn(_band.AsSpan(r * k, k), bits, blockSize,
                        codes.AsSpan(column * blocks * blob, blocks * blob), scales.AsSpan(column * blocks, blocks),
                        zeroPoints.AsSpan(column * zeroPointBytes, zeroPointBytes));
                }
            }
            string[] inputs =
            [
                x,
                StoreRaw(stem + $".weight_q{bits}", TensorProto.Types.DataType.Uint8, codes, n, blocks, blob),
                StoreRaw(stem + ".scales", TensorProto.Types.DataType.Float, MemoryMarshal.AsBytes(scales.AsSpan()), n, blocks),
                StoreRaw(stem + ".zero_points", TensorProto.Types.DataType.Uint8, zeroPoints, (long)n * zeroPointBytes),
            ];
            AttributeProto[] attributes =
            [
                Attr("K", (long)k), Attr("N", (long)n), Attr("bits", (long)bits), Attr("block_size", (long)blockSize),
                Attr("accuracy_level", (long)quantization.AccuracyLevel),
            ];
            if (outputName is not null)
            {
                graph.NodeNamedInDomain(MicrosoftDomain, "MatMulNBits", outputName, inputs, attributes);
                return outputName;
            }
            return graph.NodeInDomain(MicrosoftDomain, "MatMulNBits", [stem + ".out"], inputs, attributes)[0];
        }

        /// <summary>An initializer of raw bytes, inline or in the external file.</summary>
        private string StoreRaw(string stem, TensorProto.Types.DataType type, ReadOnlySpan<byte> raw, params long[] dims)
        {
            var name = graph.UniqueName(stem);
            if (options.External is { } external)
            {
                var offset = external.BeginTensor();
                external.Write(raw);
                graph.Graph.Initializer.Add(external.EndTensor(name, (DType)(int)type, offset, dims));
            }
            else
            {
                var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
                tensor.Dims.AddRange(dims);
                graph.Graph.Initializer.Add(tensor);
            }
            return name;
        }

        /// <summary>The transposed matrix as a float32 tensor name (a Cast follows half-precision storage).</summary>
        public string Matrix(LlamaTensor tensor, int layer, string stem)
        {
            var (rows, columns) = LlamaTensorShapes.Of(source.Config, tensor);
            var transposed = Scratch((long)rows * columns);
            var band = Math.Max(1, BandBytes / (columns * sizeof(float)));
            _band ??= new float[BandBytes / sizeof(float) + columns];
            for (var start = 0; start < rows; start += band)
            {
                var count = Math.Min(band, rows - start);
                source.ReadRows(tensor, layer, start, count, _band.AsSpan(0, count * columns));
                TransposeBand(_band, count, columns, transposed, rows, start);
            }
            return Store(stem, transposed.AsSpan(0, rows * columns), columns, rows);
        }

        /// <summary>The embedding [vocab, dim] as stored (Gather reads it as it is).</summary>
        public string Embedding(string stem)
        {
            var (rows, columns) = LlamaTensorShapes.Of(source.Config, LlamaTensor.Embedding);
            var values = Scratch((long)rows * columns);
            source.ReadRows(LlamaTensor.Embedding, 0, 0, rows, values.AsSpan(0, rows * columns));
            return Store(stem, values.AsSpan(0, rows * columns), rows, columns, cast: false);
        }

        private float[] Scratch(long length)
        {
            if (_scratch is null || _scratch.LongLength < length)
            {
                _scratch = null;
                _scratch = new float[length];
            }
            return _scratch;
        }

        /// <summary>Writes rows [start, start+count) of a [rows, columns] matrix, given in <paramref name="band"/>, into its transpose, tile by tile so both sides stay in cache.</summary>
        private static void TransposeBand(float[] band, int count, int columns, float[] transposed, int rows, int start)
        {
            const int tile = 32;
            for (var r0 = 0; r0 < count; r0 += tile)
                for (var c0 = 0; c0 < columns; c0 += tile)
                {
                    var rEnd = Math.Min(r0 + tile, count);
                    var cEnd = Math.Min(c0 + tile, columns);
                    for (var col = c0; col < cEnd; col++)
                    {
                        var target = (long)col * rows + start;
                        for (var r = r0; r < rEnd; r++)
                            transposed[target + r] = band[(long)r * columns + col];
                    }
                }
        }

        private string Store(string stem, ReadOnlySpan<float> values, long rows, long columns, bool cast = true)
        {
            var name = graph.UniqueName(stem);
            var half = options.WeightType == DType.Float16;
            if (options.External is { } external)
            {
                var offset = external.BeginTensor();
                WriteAs(values, half, external.Write);
                graph.Graph.Initializer.Add(external.EndTensor(name, options.WeightType, offset, rows, columns));
            }
            else
            {
                var raw = half ? ToHalves(values) : MemoryMarshal.AsBytes(values);
                var tensor = new TensorProto { Name = name, DataType = (int)options.WeightType, RawData = ByteString.CopyFrom(raw) };
                tensor.Dims.AddRange([rows, columns]);
                graph.Graph.Initializer.Add(tensor);
            }
            return half && cast ? graph.Node("Cast", stem + "_f", [name], Attr("to", (long)DType.Float32)) : name;
        }

        private static byte[] ToHalves(ReadOnlySpan<float> values)
        {
            var halves = new Half[values.Length];
            for (var i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
            return MemoryMarshal.AsBytes(halves.AsSpan()).ToArray();
        }

        private delegate void ByteSink(ReadOnlySpan<byte> bytes);

        private static void WriteAs(ReadOnlySpan<float> values, bool half, ByteSink sink)
        {
            const int chunk = 1 << 18;
            if (!half)
            {
                for (var i = 0; i < values.Length; i += chunk)
                    sink(MemoryMarshal.AsBytes(values.Slice(i, Math.Min(chunk, values.Length - i))));
                return;
            }
            var converted = new Half[chunk];
            for (var i = 0; i < values.Length; i += chunk)
            {
                var count = Math.Min(chunk, values.Length - i);
                for (var j = 0; j < count; j++) converted[j] = (Half)values[i + j];
                sink(MemoryMarshal.AsBytes(converted.AsSpan(0, count)));
            }
        }
    }
}
