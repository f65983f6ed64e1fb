using Onnx;

namespace InferenceMesh.Tests.Shared;

/// <summary>Rewrites graphs the way another exporter might: other names, another node order, extra paths.</summary>
public static class GraphMutations
{
    /// <summary>
    /// Renames every node and every internal tensor (initializers, intermediate values) to meaningless
    /// names and shuffles the node list; the graph's inputs and outputs keep their interface names.
    /// </summary>
    public static ModelProto RenameAndShuffle(ModelProto model, int seed)
    {
        var copy = model.Clone();
        var graph = copy.Graph;
        var keep = graph.Input.Select(i => i.Name).Concat(graph.Output.Select(o => o.Name)).ToHashSet();
        var random = new Random(seed);
        var names = new Dictionary<string, string>();
        string Rename(string name)
        {
            if (name.Length == 0 || keep.Contains(name)) return name;
            if (!names.TryGetValue(name, out var renamed)) names[name] = renamed = $"t{random.Next():x8}_{names.Count}";
            return renamed;
        }
        foreach (var initializer in graph.Initializer) initializer.Name = Rename(initializer.Name);
        foreach (var node in graph.Node)
        {
            node.Name = $"n{random.Next():x8}";
            for (var i = 0; i < node.Input.Count; i++) node.Input[i] = Rename(node.Input[i]);
            for (var i = 0; i < node.Output.Count; i++) node.Output[i] = Rename(node.Output[i]);
        }
        foreach (var info in graph.ValueInfo) info.Name = Rename(info.Name);
        var nodes = graph.Node.OrderBy(_ => random.Next()).ToList();
        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        return copy;
    }

    /// <summary>
    /// The graph as Optimum's <c>decoder_model_merged.onnx</c> holds a decoder: one <c>If</c> on a boolean input
    /// <c>use_cache_branch</c>, the decoder with past as <c>then_branch</c> (nodes and value_info moved inside, weights left in
    /// the outer graph as Optimum's merge leaves shared ones) and a second decoder as <c>else_branch</c> (its own names; its
    /// logits negated, so running the wrong branch shows).
    /// </summary>
    public static ModelProto OptimumMerged(ModelProto model)
    {
        var copy = model.Clone();
        var graph = copy.Graph;
        var withPast = new GraphProto { Name = "decoder_with_past" };
        withPast.Node.AddRange(graph.Node);
        withPast.ValueInfo.AddRange(graph.ValueInfo);
        withPast.Output.AddRange(graph.Output.Select(o => o.Clone()));

        var outer = graph.Input.Select(i => i.Name).Concat(graph.Initializer.Select(t => t.Name)).ToHashSet(StringComparer.Ordinal);
        string Own(string name) => name.Length == 0 || outer.Contains(name) ? name : $"no_past/{name}";
        var noPast = new GraphProto { Name = "decoder_no_past" };
        foreach (var node in graph.Node)
        {
            var renamed = node.Clone();
            renamed.Name = Own(node.Name);
            for (var i = 0; i < renamed.Input.Count; i++) renamed.Input[i] = Own(renamed.Input[i]);
            for (var i = 0; i < renamed.Output.Count; i++) renamed.Output[i] = Own(renamed.Output[i]);
            noPast.Node.Add(renamed);
        }
        var logits = graph.Output.Single(o => o.Name == "logits").Name;
        noPast.Node.Add(new NodeProto { OpType = "Neg", Name = "no_past/negate", Input = { Own(logits) }, Output = { "no_past/negated_logits" } });
        foreach (var output in graph.Output)
        {
            var info = output.Clone();
            info.Name = output.Name == logits ? "no_past/negated_logits" : Own(output.Name);
            noPast.Output.Add(info);
        }

        var branch = new NodeProto { OpType = "If", Name = "optimum::if", Input = { "use_cache_branch" } };
        branch.Output.AddRange(graph.Output.Select(o => o.Name));
        branch.Attribute.Add(new AttributeProto { Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph, G = withPast });
        branch.Attribute.Add(new AttributeProto { Name = "else_branch", Type = AttributeProto.Types.AttributeType.Graph, G = noPast });
        graph.Node.Clear();
        graph.Node.Add(branch);
        graph.ValueInfo.Clear();
        var flag = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Bool, Shape = new TensorShapeProto() };
        flag.Shape.Dim.Add(new TensorShapeProto.Types.Dimension { DimValue = 1 });
        graph.Input.Add(new ValueInfoProto { Name = "use_cache_branch", Type = new TypeProto { TensorType = flag } });
        return copy;
    }
}
