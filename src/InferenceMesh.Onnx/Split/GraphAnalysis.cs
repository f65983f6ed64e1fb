using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// The structure of a decoder graph as the splitter sees it, found from the graph alone (no tensor or
/// node names are trusted): the token input whose value every output depends on, the logits output
/// that depends on every input, the residual-stream tensors that every path from the tokens to the
/// logits must cross, and the block boundaries among them — one block per group of KV-cache outputs.
/// </summary>
public sealed class GraphAnalysis
{
    private readonly IReadOnlyList<NodeProto> _nodes;
    private readonly bool[] _isMain;
    private readonly List<string> _cuts;
    private readonly Dictionary<string, HashSet<int>> _beforeCut;

    public GraphAnalysis(ModelProto model)
    {
        Index = new OnnxGraphIndex(model);
        _nodes = Index.Nodes;

        var inputDependencies = InputDependencies();
        var inputNames = Index.GraphInputs.ToList();
        var outputNames = Index.Graph.Output.Select(o => o.Name).ToList();
        foreach (var output in outputNames)
            if (Index.ProducerIndex(output) is null)
                throw Refuse($"output '{output}' is not computed by any node");

        var sources = inputNames.Where(input => outputNames.All(o => inputDependencies[ProducerOf(o)].Contains(input))).ToList();
        var finals = outputNames.Where(o => inputNames.All(input => inputDependencies[ProducerOf(o)].Contains(input))).ToList();
        if (sources.Count != 1)
            throw Refuse(sources.Count == 0
                ? "no graph input feeds every output, so there is no token input to cut from"
                : $"several inputs feed every output ({string.Join(", ", sources)}), so the token input is ambiguous");
        if (finals.Count != 1)
            throw Refuse(finals.Count == 0
                ? "no output depends on every input, so there is no logits output"
                : $"several outputs depend on every input ({string.Join(", ", finals)})");
        TokenInput = sources[0];
        FinalOutput = finals[0];

        _isMain = new bool[_nodes.Count];
        for (var i = 0; i < _nodes.Count; i++) _isMain[i] = inputDependencies[i].Contains(TokenInput);

        (_cuts, _beforeCut) = FindCuts();
        BlockBoundaries = FindBlockBoundaries();
    }

    /// <summary>The graph's nodes (in topological order), producers and consumers.</summary>
    public OnnxGraphIndex Index { get; }

    public string TokenInput { get; }
    public string FinalOutput { get; }

    /// <summary>Every tensor whose removal disconnects the tokens from the logits, in flow order (the last is the logits).</summary>
    public IReadOnlyList<string> Cuts => _cuts;

    /// <summary>The residual-stream tensors that start each block, then the one that ends the last block.</summary>
    public IReadOnlyList<string> BlockBoundaries { get; }

    public int BlockCount => BlockBoundaries.Count - 1;

    public IReadOnlyList<NodeProto> Nodes => _nodes;

    /// <summary>Builds the standalone graph computing <paramref name="to"/> from <paramref name="from"/> (null = from the token input, whole head).</summary>
    internal StageGraph Extract(string? from, string to)
    {
        var stageMain = new HashSet<int>(_beforeCut[to]);
        if (from is not null) stageMain.ExceptWith(_beforeCut[from]);
        if (to == FinalOutput)
        {
            // Nodes that feed only KV outputs and no later cut still belong to the stage that holds their inputs.
            for (var i = 0; i < _nodes.Count; i++)
                if (_isMain[i] && !_beforeCut.Values.Any(set => set.Contains(i)) && (from is null || !_beforeCut[from].Contains(i)))
                    stageMain.Add(i);
        }

        var included = new HashSet<int>(stageMain);
        var pending = new Stack<int>(stageMain);
        var stageInputs = new List<string>();
        if (from is not null) stageInputs.Add(from);
        while (pending.Count > 0)
        {
            foreach (var input in _nodes[pending.Pop()].Input)
            {
                if (input.Length == 0 || input == from || Index.IsInitializer(input)) continue;
                if (Index.GraphInputs.Contains(input))
                {
                    if (!stageInputs.Contains(input)) stageInputs.Add(input);
                    continue;
                }
                var source = ProducerOf(input);
                if (included.Contains(source)) continue;
                if (_isMain[source])
                    throw Refuse($"tensor '{input}' crosses the cut at '{from}' besides the residual stream");
                included.Add(source);
                pending.Push(source);
            }
        }

        var stageNodes = Enumerable.Range(0, _nodes.Count).Where(included.Contains).Select(i => _nodes[i]).ToList();
        var produced = stageNodes.SelectMany(n => n.Output).ToHashSet(StringComparer.Ordinal);
        var outputs = new List<string> { to };
        outputs.AddRange(Index.Graph.Output.Select(o => o.Name).Where(o => o != to && produced.Contains(o)));
        return new StageGraph(stageNodes, stageInputs, outputs);
    }

    internal ValueInfoProto ValueInfoFor(string tensor)
    {
        var known = Index.Graph.Input.Concat(Index.Graph.Output).Concat(Index.Graph.ValueInfo).FirstOrDefault(v => v.Name == tensor);
        if (known is not null) return known;
        var elementType = Index.Graph.Output.First(o => o.Name == FinalOutput).Type.TensorType.ElemType;
        return new ValueInfoProto { Name = tensor, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elementType } } };
    }

    private int ProducerOf(string tensor) => Index.ProducerIndex(tensor) ?? throw Refuse($"tensor '{tensor}' is not computed by any node");

    private List<HashSet<string>> InputDependencies()
    {
        var result = new List<HashSet<string>>(_nodes.Count);
        foreach (var node in _nodes)
        {
            var set = new HashSet<string>(StringComparer.Ordinal);
            foreach (var input in node.Input)
            {
                if (Index.GraphInputs.Contains(input)) set.Add(input);
                else if (Index.ProducerIndex(input) is { } p) set.UnionWith(result[p]);
            }
            result.Add(set);
        }
        return result;
    }

    /// <summary>
    /// A tensor t is a cut when the only main-path tensor leaving the set of t's main ancestors is t itself:
    /// then everything downstream can be computed from t plus side inputs.
    /// </summary>
    private (List<string>, Dictionary<string, HashSet<int>>) FindCuts()
    {
        var finalAncestors = MainAncestors(ProducerOf(FinalOutput));
        var found = new List<(string Tensor, HashSet<int> Before)>();
        for (var i = 0; i < _nodes.Count; i++)
        {
            if (!_isMain[i] || !finalAncestors.Contains(i) || _nodes[i].Output.Count != 1) continue;
            var tensor = _nodes[i].Output[0];
            var before = MainAncestors(i);
            if (IsCut(tensor, before)) found.Add((tensor, before));
        }
        found.Sort((a, b) => a.Before.Count.CompareTo(b.Before.Count));
        return (found.Select(f => f.Tensor).ToList(), found.ToDictionary(f => f.Tensor, f => f.Before, StringComparer.Ordinal));
    }

    private bool IsCut(string tensor, HashSet<int> before)
    {
        for (var i = 0; i < _nodes.Count; i++)
        {
            if (!_isMain[i] || before.Contains(i)) continue;
            foreach (var input in _nodes[i].Input)
            {
                if (input == tensor || input.Length == 0) continue;
                if (input == TokenInput) return false;
                if (Index.ProducerIndex(input) is { } p && _isMain[p] && before.Contains(p)) return false;
            }
        }
        return true;
    }

    private HashSet<int> MainAncestors(int node)
    {
        var set = new HashSet<int> { node };
        var stack = new Stack<int>();
        stack.Push(node);
        while (stack.Count > 0)
            foreach (var input in _nodes[stack.Pop()].Input)
                if (Index.ProducerIndex(input) is { } p && _isMain[p] && set.Add(p)) stack.Push(p);
        return set;
    }

    /// <summary>
    /// A block starts at the last residual tensor before a stretch that writes KV-cache outputs; the last
    /// block ends at the last residual tensor. Residual tensors are cuts joined by a skip connection:
    /// <c>next = Add(cut, f(cut))</c>.
    /// </summary>
    private List<string> FindBlockBoundaries()
    {
        var residual = new bool[_cuts.Count];
        for (var j = 0; j + 1 < _cuts.Count; j++)
        {
            var next = _nodes[ProducerOf(_cuts[j + 1])];
            if (next.OpType == "Add" && next.Input.Contains(_cuts[j]))
                residual[j] = residual[j + 1] = true;
        }

        var stateOutputs = Index.Graph.Output.Select(o => o.Name).Where(o => o != FinalOutput).ToHashSet(StringComparer.Ordinal);
        var boundaries = new List<int>();
        for (var j = 0; j < _cuts.Count; j++)
        {
            var segment = new HashSet<int>(_beforeCut[_cuts[j]]);
            if (j > 0) segment.ExceptWith(_beforeCut[_cuts[j - 1]]);
            if (!segment.Any(i => _nodes[i].Output.Any(stateOutputs.Contains))) continue;
            var start = Enumerable.Range(0, j).LastOrDefault(r => residual[r], -1);
            if (start < 0)
                throw Refuse($"the KV-cache outputs computed before '{_cuts[j]}' have no residual tensor in front of them");
            if (boundaries.Count > 0 && boundaries[^1] >= start)
                throw Refuse($"two groups of KV-cache outputs share the block that starts at '{_cuts[start]}'");
            boundaries.Add(start);
        }
        if (boundaries.Count == 0)
            throw Refuse("the graph has no KV-cache outputs between its residual tensors, so it has no blocks to cut");
        var end = Enumerable.Range(0, _cuts.Count).Last(r => residual[r]);
        if (end <= boundaries[^1])
            throw Refuse("no residual tensor follows the last block");
        boundaries.Add(end);
        return boundaries.Select(b => _cuts[b]).ToList();
    }

    private static MeshException Refuse(string why) => new(MeshErrorCode.NoCutPoint, $"cannot split this graph: {why}");
}

internal sealed record StageGraph(IReadOnlyList<NodeProto> Nodes, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs);
