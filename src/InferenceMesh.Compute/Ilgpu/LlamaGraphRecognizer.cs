using InferenceMesh.Core;
using InferenceMesh.Onnx;
using Onnx;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// Recognises the Llama blocks of a block-range stage graph from its structure alone — walking from the activation
/// input through the op pattern of each block (RMSNorm, Q/K/V projections, rotary embedding of adjacent pairs, KV-cache
/// append, grouped-query attention with an additive mask, output projection, residual add, SiLU-gated FFN, residual add)
/// — and reads the weights from the initializers. Tensor and node names and node order play no part. A graph that
/// departs from the pattern is refused with <see cref="MeshErrorCode.InvalidOnnx"/> and a message saying where, so that
/// the caller can run it on ONNX Runtime instead.
/// </summary>
public static class LlamaGraphRecognizer
{
    /// <summary>Recognises the blocks between <paramref name="activationInput"/> and <paramref name="activationOutput"/>.</summary>
    public static LlamaStagePlan Recognize(ModelProto model, string activationInput, string activationOutput)
    {
        ArgumentNullException.ThrowIfNull(model);
        var view = new OnnxGraphIndex(model);
        if (view.Nodes.FirstOrDefault(n => n.Domain is not ("" or "ai.onnx")) is { } custom)
            throw Refuse(-1, $"node of type {custom.Domain}:{custom.OpType} is outside the standard ONNX domain");
        if (!view.GraphInputs.Contains(activationInput))
            throw Refuse(-1, $"'{activationInput}' is not an input of the graph");
        if (!view.GraphOutputs.Contains(activationOutput))
            throw Refuse(-1, $"'{activationOutput}' is not an output of the graph");

        var matcher = new Matcher(view, activationInput);
        var blocks = new List<LlamaBlockPlan>();
        var x = activationInput;
        while (x != activationOutput)
        {
            if (blocks.Count > 4096) throw Refuse(blocks.Count, "the walk from the activation input does not end");
            x = matcher.Block(blocks.Count, x, blocks);
        }
        if (blocks.Count == 0)
            throw Refuse(0, "the stage has no blocks between its activation input and output");

        var pastInputs = view.Graph.Input.Count(i => view.GraphInputs.Contains(i.Name) && view.Consumers(i.Name).Any(n => n.OpType == "Concat"));
        if (pastInputs != 2 * blocks.Count)
            throw Refuse(blocks.Count, $"the graph has {pastInputs} cache inputs but {blocks.Count} recognised blocks");
        return new LlamaStagePlan(matcher.Dim, matcher.Heads, matcher.KvHeads, matcher.HeadSize, matcher.HiddenDim, matcher.InverseFrequencies!, blocks);
    }

    private static MeshException Refuse(int block, string detail) => new(MeshErrorCode.InvalidOnnx,
        $"the ILGPU executor does not recognise this graph as Llama blocks{(block >= 0 ? $" (block {block} of the stage)" : "")}: {detail}; run it on ONNX Runtime (--executor ort)");

    private sealed class Matcher(OnnxGraphIndex g, string activationInput)
    {
        private int _block;

        public int Dim { get; private set; }
        public int Heads { get; private set; }
        public int KvHeads { get; private set; }
        public int HeadSize { get; private set; }
        public int HiddenDim { get; private set; }
        public float[]? InverseFrequencies { get; private set; }

        /// <summary>Matches one block starting at residual tensor <paramref name="x"/>; returns the residual tensor after it.</summary>
        public string Block(int index, string x, List<LlamaBlockPlan> blocks)
        {
            _block = index;
            var (h, attentionNorm, attentionEps) = RmsNorm(x, "attention RMSNorm");
            if (Dim == 0) Dim = attentionNorm.Length;
            else Expect(attentionNorm.Length == Dim, $"attention norm weight has {attentionNorm.Length} elements, expected {Dim}");

            var projections = Projections(h, Dim, 3, "Q/K/V projections");
            string? q = null, k = null, v = null;
            float[]? wq = null, wk = null, wv = null;
            int kvHeads = 0, headSize = 0, heads = 0;
            string? pastKey = null, pastValue = null, presentKey = null, presentValue = null;
            foreach (var (output, weight, outDim) in projections)
            {
                var (split, splitHeads, splitHeadSize) = SplitHeads(output, outDim);
                var cache = CacheAppend(split);
                if (cache is { } valueCache)
                {
                    Expect(v is null, "two projections feed a cache without a rotary embedding");
                    (v, wv, pastValue, presentValue) = (split, weight, valueCache.Past, valueCache.Present);
                    kvHeads = splitHeads;
                    headSize = splitHeadSize;
                    continue;
                }
                var (rotated, inverseFrequencies) = Rope(split, splitHeadSize);
                if (InverseFrequencies is null) InverseFrequencies = inverseFrequencies;
                else Expect(inverseFrequencies.AsSpan().SequenceEqual(InverseFrequencies), "rotary frequencies differ between blocks");
                if (CacheAppend(rotated) is { } keyCache)
                {
                    Expect(k is null, "two rotated projections feed a cache");
                    (k, wk, pastKey, presentKey) = (rotated, weight, keyCache.Past, keyCache.Present);
                }
                else
                {
                    Expect(q is null, "two rotated projections feed no cache");
                    (q, wq) = (rotated, weight);
                    heads = splitHeads;
                    Expect(outDim == Dim, $"the query projection has {outDim} outputs, expected {Dim}");
                }
            }
            Expect(q is not null && k is not null && v is not null, "could not tell the query, key and value projections apart");
            Expect(heads * headSize == Dim && kvHeads > 0 && heads % kvHeads == 0 && headSize % 2 == 0,
                $"heads {heads} × head size {headSize} does not make dim {Dim} with {kvHeads} KV heads");
            Expect(wk!.Length == Dim * kvHeads * headSize, "the key projection does not match the KV heads");
            SetOnce(() => Heads, v => Heads = v, heads, "heads");
            SetOnce(() => KvHeads, v => KvHeads = v, kvHeads, "KV heads");
            SetOnce(() => HeadSize, v => HeadSize = v, headSize, "head size");

            // Attention: scores = q · repeat(present key)ᵀ / c + mask; softmax; · repeat(present value).
            var keys = RepeatKv(presentKey!);
            var keysT = One(g.Consumers(keys, "Transpose").Where(n => Perm(n) is [0, 1, 3, 2]), "a transpose of the keys");
            var scoresNode = One(g.Consumers(q!, "MatMul").Where(n => n.Input[0] == q && n.Input[1] == keysT.Output[0]), "the score MatMul q · kᵀ");
            var scores = scoresNode.Output[0];
            var scaleNode = One(g.Consumers(scores).Where(n => n.OpType is "Div" or "Mul" && n.Input[0] == scores && g.Scalar(n.Input[1]) is not null), "the score scaling");
            var constant = g.Scalar(scaleNode.Input[1])!.Value;
            var divisor = scaleNode.OpType == "Div" ? constant : 1f / constant;
            Expect(float.IsFinite(divisor) && divisor > 0, $"scores are scaled by 1/{divisor}");
            var scaled = scaleNode.Output[0];
            var maskAdd = One(g.Consumers(scaled, "Add"), "the attention mask add");
            var mask = Other(maskAdd, scaled);
            Expect(!g.DependsOn(mask, activationInput) && g.GraphInputs.Any(i => g.DependsOn(mask, i)),
                "the attention bias is not computed from the context inputs alone");
            var softmax = One(g.Consumers(maskAdd.Output[0], "Softmax"), "the attention softmax");
            var axis = OnnxGraphIndex.IntAttribute(softmax, "axis") ?? (g.Opset >= 13 ? -1 : 1);
            Expect(axis is -1 or 3, $"softmax over axis {axis}, not the key axis");
            var values = RepeatKv(presentValue!);
            var contextNode = One(g.Consumers(softmax.Output[0], "MatMul").Where(n => n.Input[0] == softmax.Output[0] && n.Input[1] == values), "the attention · values MatMul");
            var merged = One(g.Consumers(contextNode.Output[0], "Transpose").Where(n => Perm(n) is [0, 2, 1, 3]), "the merge of heads");
            var flat = One(g.Consumers(merged.Output[0], "Reshape").Where(n => ReshapeTo(n, 3) is [_, _, var d] && (d == Dim || d == -1)), "the reshape of heads to [.., dim]");
            var (attentionOut, wo) = OneProjection(flat.Output[0], Dim, Dim, "the output projection");
            var residual1 = One(g.Consumers(attentionOut, "Add").Where(n => Other(n, attentionOut) == x), "the attention residual add");
            var xMid = residual1.Output[0];

            // FFN: w2 · (silu(w1 · h2) ⊙ (w3 · h2)).
            var (h2, ffnNorm, ffnEps) = RmsNorm(xMid, "FFN RMSNorm");
            Expect(ffnNorm.Length == Dim, $"FFN norm weight has {ffnNorm.Length} elements, expected {Dim}");
            var ffn = Projections(h2, Dim, 2, "the FFN gate and up projections");
            Expect(ffn[0].OutDim == ffn[1].OutDim, "the FFN gate and up projections differ in width");
            SetOnce(() => HiddenDim, v => HiddenDim = v, ffn[0].OutDim, "FFN hidden width");
            var gateIndex = ffn.FindIndex(p => g.Consumers(p.Output, "Sigmoid").Any());
            Expect(gateIndex >= 0, "no FFN projection goes through a sigmoid (SiLU)");
            var (gate, w1, _) = ffn[gateIndex];
            var (up, w3, _) = ffn[1 - gateIndex];
            var sigmoid = One(g.Consumers(gate, "Sigmoid"), "the SiLU sigmoid");
            var silu = One(g.Consumers(sigmoid.Output[0], "Mul").Where(n => Other(n, sigmoid.Output[0]) == gate), "the SiLU product gate · σ(gate)");
            var gated = One(g.Consumers(silu.Output[0], "Mul").Where(n => Other(n, silu.Output[0]) == up), "the gating product silu(gate) · up");
            var (down, w2) = OneProjection(gated.Output[0], HiddenDim, Dim, "the FFN down projection");
            var residual2 = One(g.Consumers(down, "Add").Where(n => Other(n, down) == xMid), "the FFN residual add");

            blocks.Add(new LlamaBlockPlan(attentionNorm, attentionEps, wq!, wk, wv!, wo, ffnNorm, ffnEps, w1, w2, w3, divisor, pastKey!, pastValue!));
            return residual2.Output[0];
        }

        /// <summary>x · (1 / sqrt(mean(x²) + eps)) · weight, or x / sqrt(…) · weight.</summary>
        private (string Output, float[] Weight, float Epsilon) RmsNorm(string x, string what)
        {
            var square = One(g.Consumers(x).Where(n =>
                (n.OpType == "Mul" && n.Input.Count == 2 && n.Input[0] == x && n.Input[1] == x)
                || (n.OpType == "Pow" && n.Input[0] == x && g.Scalar(n.Input[1]) == 2f)), $"the square in the {what}");
            var mean = One(g.Consumers(square.Output[0], "ReduceMean"), $"the mean in the {what}");
            var axes = g.Opset >= 18 && mean.Input.Count > 1 ? g.Int64s(mean.Input[1]) : OnnxGraphIndex.IntsAttribute(mean, "axes");
            Expect(axes is [-1] or [2], $"the {what} averages over axes [{string.Join(",", axes ?? [])}], not the last");
            Expect((OnnxGraphIndex.IntAttribute(mean, "keepdims") ?? 1) == 1, $"the {what} does not keep dims");
            var addEps = One(g.Consumers(mean.Output[0], "Add").Where(n => g.Scalar(Other(n, mean.Output[0])) is not null), $"the epsilon in the {what}");
            var epsilon = g.Scalar(Other(addEps, mean.Output[0]))!.Value;
            var sqrt = One(g.Consumers(addEps.Output[0], "Sqrt"), $"the square root in the {what}");
            string normalized;
            if (g.Consumers(sqrt.Output[0], "Reciprocal").FirstOrDefault() is { } reciprocal)
                normalized = One(g.Consumers(reciprocal.Output[0], "Mul").Where(n => Other(n, reciprocal.Output[0]) == x), $"the scaling in the {what}").Output[0];
            else
                normalized = One(g.Consumers(sqrt.Output[0], "Div").Where(n => n.Input[0] == x && n.Input[1] == sqrt.Output[0]), $"the division in the {what}").Output[0];
            var scale = One(g.Consumers(normalized, "Mul").Where(n => g.Dims(Other(n, normalized)) is [_] && g.Floats(Other(n, normalized)) is not null), $"the weight of the {what}");
            return (scale.Output[0], g.Floats(Other(scale, normalized))!, epsilon);
        }

        private List<(string Output, float[] Weight, int OutDim)> Projections(string h, int inDim, int count, string what)
        {
            var list = new List<(string, float[], int)>();
            foreach (var node in g.Consumers(h, "MatMul"))
            {
                if (node.Input[0] != h || g.Dims(node.Input[1]) is not [var rows, var cols] || g.Floats(node.Input[1]) is not { } weight)
                    throw Refuse(_block, $"{what}: a MatMul takes the normalized activations without a constant [in, out] weight");
                Expect(rows == inDim, $"{what}: weight of shape [{rows}, {cols}] does not take {inDim} inputs");
                list.Add((node.Output[0], weight, (int)cols));
            }
            Expect(list.Count == count, $"{what}: expected {count} MatMuls of the normalized activations, found {list.Count}");
            return list;
        }

        private (string Output, float[] Weight) OneProjection(string input, int inDim, int outDim, string what)
        {
            var node = One(g.Consumers(input, "MatMul").Where(n => n.Input[0] == input), what);
            Expect(g.Dims(node.Input[1]) is [var rows, var cols] && rows == inDim && cols == outDim && g.Floats(node.Input[1]) is not null,
                $"{what} has no constant [{inDim}, {outDim}] weight");
            return (node.Output[0], g.Floats(node.Input[1])!);
        }

        /// <summary>Reshape to [.., .., heads, headSize] then Transpose(0,2,1,3).</summary>
        private (string Output, int Heads, int HeadSize) SplitHeads(string projection, int width)
        {
            var reshape = One(g.Consumers(projection, "Reshape").Where(n => ReshapeTo(n, 4) is not null), "the split into heads");
            var shape = ReshapeTo(reshape, 4)!;
            Expect(shape[0] is 0 or 1 && shape[1] is 0 or -1 && shape[2] > 0 && shape[3] > 0 && shape[2] * shape[3] == width,
                $"the split into heads reshapes to [{string.Join(",", shape)}]");
            var transpose = One(g.Consumers(reshape.Output[0], "Transpose").Where(n => Perm(n) is [0, 2, 1, 3]), "the heads-first transpose");
            return (transpose.Output[0], (int)shape[2], (int)shape[3]);
        }

        /// <summary>Concat(past, t, axis 2) where past is a graph input and the result a graph output; null if t feeds no such concat.</summary>
        private (string Past, string Present)? CacheAppend(string t)
        {
            var concat = g.Consumers(t, "Concat").FirstOrDefault(n => n.Input.Count == 2 && n.Input[1] == t && g.GraphInputs.Contains(n.Input[0]));
            if (concat is null) return null;
            Expect(OnnxGraphIndex.IntAttribute(concat, "axis") is 2 or -2, "the cache is not appended along the sequence axis");
            Expect(g.GraphOutputs.Contains(concat.Output[0]), "the appended cache is not an output of the stage");
            return (concat.Input[0], concat.Output[0]);
        }

        /// <summary>
        /// Rotary embedding of adjacent pairs: reshape to [.., headSize/2, 2], split into (re, im), re·cos − im·sin and re·sin + im·cos,
        /// concatenated on the last axis and reshaped back; cos and sin of (position × inverse frequency).
        /// </summary>
        private (string Output, float[] InverseFrequencies) Rope(string x, int headSize)
        {
            var half = headSize / 2;
            var pairs = One(g.Consumers(x, "Reshape").Where(n => ReshapeTo(n, 5) is [_, _, _, var p, 2] && p == half), "the rotary reshape to adjacent pairs");
            var split = One(g.Consumers(pairs.Output[0], "Split").Where(n => n.Output.Count == 2), "the rotary split into pairs");
            Expect(OnnxGraphIndex.IntAttribute(split, "axis") is -1 or 4, "the rotary split is not on the pair axis");
            var sizes = split.Input.Count > 1 ? g.Int64s(split.Input[1]) : OnnxGraphIndex.IntsAttribute(split, "split");
            Expect(sizes is null or [1, 1], "the rotary split does not take one element of each pair");
            var re = split.Output[0];
            var im = split.Output[1];
            var sub = One(g.Consumers(re, "Mul").SelectMany(m => g.Consumers(m.Output[0], "Sub")).Where(s => Producer(s.Input[0], "Mul", re) is not null && Producer(s.Input[1], "Mul", im) is not null),
                "the rotary re·cos − im·sin");
            var cos = Other(g.Producer(sub.Input[0])!, re);
            var sin = Other(g.Producer(sub.Input[1])!, im);
            var add = One(g.Consumers(re, "Mul").SelectMany(m => g.Consumers(m.Output[0], "Add")).Where(a =>
                    (IsMul(a.Input[0], re, sin) && IsMul(a.Input[1], im, cos)) || (IsMul(a.Input[1], re, sin) && IsMul(a.Input[0], im, cos))),
                "the rotary re·sin + im·cos");
            var joined = One(g.Consumers(sub.Output[0], "Concat").Where(c => c.Input.Count == 2 && c.Input[0] == sub.Output[0] && c.Input[1] == add.Output[0]), "the rotary concat");
            Expect(OnnxGraphIndex.IntAttribute(joined, "axis") is -1 or 4, "the rotary concat is not on the pair axis");
            var back = One(g.Consumers(joined.Output[0], "Reshape").Where(n => ReshapeTo(n, 4) is [_, _, _, var d] && d == headSize), "the rotary reshape back to heads");

            var cosAngles = Through(cos, "Cos");
            var sinAngles = Through(sin, "Sin");
            Expect(cosAngles is not null && cosAngles == sinAngles, "cos and sin are not of the same angles");
            var angles = g.Producer(cosAngles!);
            Expect(angles is { OpType: "Mul" }, "the rotary angles are not position × inverse frequency");
            var frequencyInput = angles!.Input.FirstOrDefault(i => g.Floats(i) is { } f && f.Length == half);
            Expect(frequencyInput is not null, $"the rotary angles have no constant of {half} inverse frequencies");
            var positions = Other(angles, frequencyInput!);
            Expect(!g.DependsOn(positions, activationInput) && g.GraphInputs.Any(i => g.DependsOn(positions, i)), "the rotary positions are not computed from the context inputs");
            return (back.Output[0], g.Floats(frequencyInput!)!);
        }

        /// <summary>The input of the <paramref name="opType"/> node that <paramref name="t"/> comes from through shape-only ops.</summary>
        private string? Through(string t, string opType)
        {
            for (var depth = 0; depth < 8 && g.Producer(t) is { } node; depth++)
            {
                if (node.OpType == opType) return node.Input[0];
                if (node.OpType is not ("Unsqueeze" or "Reshape" or "Identity" or "Squeeze")) return null;
                t = node.Input[0];
            }
            return null;
        }

        /// <summary>The cache as seen by query heads: itself when heads = kvHeads; else Unsqueeze(2) → Expand(1,1,group,1,1) → Reshape(0,heads,-1,hs).</summary>
        private string RepeatKv(string present)
        {
            if (Heads == KvHeads) return present;
            var group = Heads / KvHeads;
            var unsqueeze = One(g.Consumers(present, "Unsqueeze").Where(n => (n.Input.Count > 1 ? g.Int64s(n.Input[1]) : OnnxGraphIndex.IntsAttribute(n, "axes")) is [2]),
                "the KV-head unsqueeze of grouped-query attention");
            var expand = One(g.Consumers(unsqueeze.Output[0], "Expand").Where(n => g.Int64s(n.Input[1]) is [1, 1, var r, 1, 1] && r == group), "the KV-head expand");
            var reshape = One(g.Consumers(expand.Output[0], "Reshape").Where(n => ReshapeTo(n, 4) is [_, var h, _, var d] && h == Heads && d == HeadSize), "the KV-head reshape");
            return reshape.Output[0];
        }

        private NodeProto? Producer(string tensor, string opType, string operand) =>
            g.Producer(tensor) is { } node && node.OpType == opType && node.Input.Contains(operand) ? node : null;

        private bool IsMul(string tensor, string a, string b) =>
            g.Producer(tensor) is { OpType: "Mul" } node && node.Input.Count == 2
            && ((node.Input[0] == a && node.Input[1] == b) || (node.Input[0] == b && node.Input[1] == a));

        private long[]? ReshapeTo(NodeProto reshape, int rank) =>
            reshape.Input.Count == 2 && g.Int64s(reshape.Input[1]) is { } shape && shape.Length == rank ? shape : null;

        private static long[]? Perm(NodeProto transpose) => OnnxGraphIndex.IntsAttribute(transpose, "perm");

        private string Other(NodeProto binary, string operand)
        {
            Expect(binary.Input.Count == 2, $"{binary.OpType} node does not have two inputs");
            return binary.Input[0] == operand ? binary.Input[1] : binary.Input[0];
        }

        private NodeProto One(IEnumerable<NodeProto> candidates, string what)
        {
            var list = candidates.Distinct().Take(2).ToList();
            return list.Count switch
            {
                1 => list[0],
                0 => throw Refuse(_block, $"could not find {what}"),
                _ => throw Refuse(_block, $"found more than one candidate for {what}"),
            };
        }

        private void SetOnce(Func<int> get, Action<int> set, int value, string what)
        {
            if (get() == 0) set(value);
            else Expect(get() == value, $"{what} {value} differs from the first block's {get()}");
        }

        private void Expect(bool condition, string detail)
        {
            if (!condition) throw Refuse(_block, detail);
        }
    }
}
