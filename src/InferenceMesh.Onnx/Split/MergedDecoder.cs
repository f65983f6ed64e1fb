using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// Hugging Face Optimum's <c>decoder_model_merged.onnx</c> holds the decoders with and without past in one graph: an
/// <c>If</c> on the boolean input <c>use_cache_branch</c> whose <c>then_branch</c> is the with-past decoder. A mesh always
/// runs with a KV cache (a prefill is a step with past length 0), so the splitter unmerges such a graph first: each such
/// <c>If</c> is replaced by its with-past branch, inlined, and <c>use_cache_branch</c> leaves the inputs.
/// </summary>
internal static class MergedDecoder
{
    /// <summary>The boolean input that chooses the branch in Optimum's merged decoders.</summary>
    public const string UseCacheBranch = "use_cache_branch";

    /// <summary>The graph with every <c>If</c> on <see cref="UseCacheBranch"/> replaced by its then-branch; the model itself when it has none.</summary>
    public static ModelProto Unmerge(ModelProto model)
    {
        if (!model.Graph.Node.Any(IsBranchOnCache)) return model;
        var copy = model.Clone();
        var graph = copy.Graph;
        var nodes = new List<NodeProto>();
        foreach (var node in graph.Node)
        {
            if (!IsBranchOnCache(node))
            {
                nodes.Add(node);
                continue;
            }
            var branch = node.Attribute.Single(a => a.Name == "then_branch").G;
            // The branch's outputs take the If's names: renamed where a branch node produces them, passed through an Identity otherwise.
            var rename = new Dictionary<string, string>(StringComparer.Ordinal);
            var produced = branch.Node.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
            for (var i = 0; i < node.Output.Count; i++)
            {
                if (produced.Contains(branch.Output[i].Name)) rename[branch.Output[i].Name] = node.Output[i];
                else nodes.Add(new NodeProto { OpType = "Identity", Name = $"{node.Name}/pass_{i}", Input = { branch.Output[i].Name }, Output = { node.Output[i] } });
            }
            foreach (var inner in branch.Node)
            {
                var inlined = inner.Clone();
                for (var i = 0; i < inlined.Output.Count; i++) inlined.Output[i] = rename.GetValueOrDefault(inlined.Output[i], inlined.Output[i]);
                for (var i = 0; i < inlined.Input.Count; i++) inlined.Input[i] = rename.GetValueOrDefault(inlined.Input[i], inlined.Input[i]);
                nodes.Add(inlined);
            }
            graph.Initializer.AddRange(branch.Initializer);
            graph.ValueInfo.AddRange(branch.ValueInfo.Where(v => !rename.ContainsKey(v.Name)));
        }
        graph.Node.Clear();
        graph.Node.AddRange(nodes);
        var stillRead = nodes.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        foreach (var input in graph.Input.Where(i => i.Name == UseCacheBranch && !stillRead.Contains(i.Name)).ToList()) graph.Input.Remove(input);
        return copy;
    }

    private static bool IsBranchOnCache(NodeProto node) =>
        node.OpType == "If" && node.Domain is "" or "ai.onnx" && node.Input.Count == 1 && node.Input[0] == UseCacheBranch;
}
