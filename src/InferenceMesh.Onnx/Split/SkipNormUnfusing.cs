using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// Rewrites ONNX Runtime's fused <c>SkipSimplifiedLayerNormalization</c> and <c>SkipLayerNormalization</c> into their
/// standard form when their residual sum feeds on: an <c>Add</c> that yields the sum, then the normalisation of that
/// sum in standard operators (RMS: <c>Cast</c> to fp32, <c>Mul</c>, <c>ReduceMean</c>, <c>Add</c> ε, <c>Sqrt</c>,
/// <c>Div</c>, <c>Mul</c> γ, <c>Cast</c> back; LayerNorm: <c>LayerNormalization</c>, opset 17 and later). A fused node
/// emits both the sum and the normalised input, so a layer boundary there carries two tensors; after the rewrite only
/// the residual sum crosses and each stage normalises it itself: half the bytes per position on the wire.
/// The normalisation then reads the sum as rounded to the graph's type (fp16), where the fused kernel reads it before
/// rounding; the difference stays within fp16 tolerance (measured in the tests).
/// </summary>
public static class SkipNormUnfusing
{
    private const string Contrib = "com.microsoft";
    private const int SumOutput = 3;

    /// <summary>The model with every such node rewritten, and how many were; the model itself when none qualifies.</summary>
    public static (ModelProto Model, int Rewritten) Unfuse(ModelProto model)
    {
        var consumed = model.Graph.Node.SelectMany(n => n.Input).Concat(model.Graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        var opset = model.OpsetImport.Where(o => o.Domain is "" or "ai.onnx").Select(o => o.Version).DefaultIfEmpty(1).Max();
        bool Qualifies(NodeProto node) => node.Domain == Contrib
            && (node.OpType == "SkipSimplifiedLayerNormalization" && node.Input.Count == 3
                || node.OpType == "SkipLayerNormalization" && opset >= 17 && (node.Input.Count < 5 || node.Input[4].Length == 0))
            && node.Output.Count > SumOutput && consumed.Contains(node.Output[SumOutput])
            && node.Output.Skip(1).Take(2).All(o => o.Length == 0 || !consumed.Contains(o));
        if (!model.Graph.Node.Any(Qualifies)) return (model, 0);

        var copy = model.Clone();
        var types = ElementTypes(copy.Graph);
        var nodes = new List<NodeProto>();
        var rewritten = 0;
        foreach (var node in copy.Graph.Node)
        {
            if (!Qualifies(node) || !types.TryGetValue(node.Input[2], out var type))
            {
                nodes.Add(node);
                continue;
            }
            rewritten++;
            var name = node.Name.Length > 0 ? node.Name : node.Output[0];
            var epsilon = node.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-12f;
            var sum = node.Output[SumOutput];
            nodes.Add(Node("Add", $"{name}/sum", [node.Input[0], node.Input[1]], [sum]));
            if (node.OpType == "SkipLayerNormalization")
            {
                string[] inputs = node.Input.Count > 3 && node.Input[3].Length > 0 ? [sum, node.Input[2], node.Input[3]] : [sum, node.Input[2]];
                nodes.Add(Node("LayerNormalization", $"{name}/norm", inputs, [node.Output[0]],
                    new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 },
                    new AttributeProto { Name = "epsilon", Type = AttributeProto.Types.AttributeType.Float, F = epsilon }));
                continue;
            }
            nodes.AddRange(RmsNorm(copy.Graph, name, sum, node.Input[2], node.Output[0], type, epsilon, opset));
        }
        copy.Graph.Node.Clear();
        copy.Graph.Node.AddRange(nodes);
        return (copy, rewritten);
    }

    /// <summary><c>y = x / sqrt(mean(x²) + ε) · γ</c>, computed in fp32 as the fused kernel does, then cast to <paramref name="type"/>.</summary>
    private static IEnumerable<NodeProto> RmsNorm(GraphProto graph, string name, string x, string gamma, string output, int type, float epsilon, long opset)
    {
        const int float32 = (int)TensorProto.Types.DataType.Float;
        string T(string stem) => $"{name}/{stem}";
        var epsilonName = T("epsilon");
        graph.Initializer.Add(new TensorProto { Name = epsilonName, DataType = float32, FloatData = { epsilon } });
        yield return Node("Cast", T("x32"), [x], [T("x32")], Cast(float32));
        yield return Node("Mul", T("square"), [T("x32"), T("x32")], [T("square")]);
        if (opset >= 18)
        {
            var axes = T("axes");
            graph.Initializer.Add(new TensorProto { Name = axes, DataType = (int)TensorProto.Types.DataType.Int64, Dims = { 1 }, Int64Data = { -1 } });
            yield return Node("ReduceMean", T("mean"), [T("square"), axes], [T("mean")]);
        }
        else
            yield return Node("ReduceMean", T("mean"), [T("square")], [T("mean")], new AttributeProto { Name = "axes", Type = AttributeProto.Types.AttributeType.Ints, Ints = { -1 } });
        yield return Node("Add", T("mean_eps"), [T("mean"), epsilonName], [T("mean_eps")]);
        yield return Node("Sqrt", T("rms"), [T("mean_eps")], [T("rms")]);
        yield return Node("Div", T("normalized"), [T("x32"), T("rms")], [T("normalized")]);
        yield return Node("Cast", T("gamma32"), [gamma], [T("gamma32")], Cast(float32));
        if (type == float32)
        {
            yield return Node("Mul", T("scaled"), [T("normalized"), T("gamma32")], [output]);
            yield break;
        }
        yield return Node("Mul", T("scaled"), [T("normalized"), T("gamma32")], [T("scaled")]);
        yield return Node("Cast", T("out"), [T("scaled")], [output], Cast(type));
    }

    private static AttributeProto Cast(int to) => new() { Name = "to", Type = AttributeProto.Types.AttributeType.Int, I = to };

    private static NodeProto Node(string op, string name, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        return node;
    }

    /// <summary>The element type of each initializer and declared value, by name.</summary>
    private static Dictionary<string, int> ElementTypes(GraphProto graph)
    {
        var types = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var value in graph.Input.Concat(graph.ValueInfo).Concat(graph.Output))
            if (value.Type?.TensorType is { } tensor) types[value.Name] = tensor.ElemType;
        foreach (var initializer in graph.Initializer) types[initializer.Name] = initializer.DataType;
        return types;
    }
}
