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
}
