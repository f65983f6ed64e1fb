using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// The structure of a decoder graph as the splitter sees it. The token input and the final output
/// (logits or final hidden state) are the ones named by the caller, else <c>input_ids</c> and <c>logits</c>
/// when present, else found from the structure. A node is on the main path when it depends on the token
/// input's value; depending on it only through <c>Shape</c> or <c>Size</c> is a side dependence, recomputed
/// in each stage from that stage's own inputs. A cut is a prefix of the main path closed under its
/// ancestors; what crosses it is the set (at most <see cref="MaxBoundaryTensors"/>) of main tensors the
/// prefix produces and the rest reads. Each KV output is bound to the past input nearest to it by data flow;
/// a block boundary sits between two KV groups where a cut separates them (fewest tensors, then the
/// latest), and a tensor that would cross two boundaries fuses the blocks on both sides.
/// Graphs are normalised the way ONNX Runtime loads them: nodes in any order, and a tensor defined twice
/// takes its later definition.
/// </summary>
public sealed class GraphAnalysis
{
    /// <summary>The most tensors one boundary may carry (fused exports cross with two: residual sum and normalised input).</summary>
    public const int MaxBoundaryTensors = 2;

    private static readonly HashSet<string> ShapeOps = new(StringComparer.Ordinal) { "Shape", "Size" };
    private readonly IReadOnlyList<NodeProto> _nodes;
    private readonly bool[] _isMain;
    private readonly bool[] _isDangling;
    private readonly Dictionary<int, Candidate> _candidates = new();
    private readonly List<Candidate> _boundaries;
    private readonly Dictionary<string, string> _pastOf = new(StringComparer.Ordinal);
    private readonly List<string> _fusions = new();

    /// <param name="model">The decoder graph.</param>
    /// <param name="tokenInput">The graph input holding token ids; null: <c>input_ids</c>, else found from the structure.</param>
    /// <param name="finalOutput">The graph output holding logits or the final state; null: <c>logits</c>, else found from the structure.</param>
    /// <param name="unfuseSkipNorms">Rewrite fused skip-norms whose residual sum feeds on into their standard form first (see
    /// <see cref="UnfusedSkipNorms"/>), so one tensor instead of two crosses each layer boundary of a fused export.</param>
    public GraphAnalysis(ModelProto model, string? tokenInput = null, string? finalOutput = null, bool unfuseSkipNorms = false)
    {
        var unmerged = MergedDecoder.Unmerge(model);
        Unmerged = !ReferenceEquals(unmerged, model);
        Model = OnnxGraphIndex.LaterDefinitionWins(unmerged);
        if (unfuseSkipNorms) (Model, UnfusedSkipNorms) = SkipNormUnfusing.Unfuse(Model);
        Index = new OnnxGraphIndex(Model);
        _nodes = Index.Nodes;

        var inputNames = Index.GraphInputs.ToList();
        var outputNames = Index.Graph.Output.Select(o => o.Name).ToList();
        foreach (var output in outputNames)
            if (Index.ProducerIndex(output) is null)
                throw Refuse($"output '{output}' is not computed by any node");
        TokenInput = ChooseTokenInput(tokenInput, inputNames, outputNames);
        FinalOutput = ChooseFinalOutput(finalOutput, inputNames, outputNames);

        _isMain = new bool[_nodes.Count];
        for (var i = 0; i < _nodes.Count; i++)
            _isMain[i] = !ShapeOps.Contains(_nodes[i].OpType) && _nodes[i].Input.Any(input =>
                input == TokenInput || (input.Length > 0 && Index.ProducerIndex(input) is { } p && _isMain[p]));
        if (!_isMain[ProducerOf(FinalOutput)])
            throw Refuse($"output '{FinalOutput}' does not depend on the values of '{TokenInput}'");
        var finalAncestors = MainAncestors(ProducerOf(FinalOutput));
        _isDangling = Enumerable.Range(0, _nodes.Count).Select(i => _isMain[i] && !finalAncestors.Contains(i)).ToArray();

        BindState(outputNames);
        foreach (var i in finalAncestors.Order())
            if (i != ProducerOf(FinalOutput) && Evaluate(i) is { } candidate) _candidates[i] = candidate;
        _boundaries = FindBlockBoundaries();
    }

    /// <summary>The normalised model the analysis describes (the later definition of a twice-defined tensor wins).</summary>
    public ModelProto Model { get; }

    /// <summary>
    /// Whether the graph was an Optimum merged decoder (an <c>If</c> on <c>use_cache_branch</c>) and <see cref="Model"/> is its
    /// with-past branch inlined: run <see cref="Model"/>, not the file, since the file wants <c>use_cache_branch</c> fed.
    /// </summary>
    public bool Unmerged { get; }

    /// <summary>
    /// How many fused <c>SkipSimplifiedLayerNormalization</c>/<c>SkipLayerNormalization</c> nodes were rewritten into an
    /// <c>Add</c> and a standard normalisation, so that only the residual sum crosses the boundary there (0 unless asked).
    /// </summary>
    public int UnfusedSkipNorms { get; }

    /// <summary>The graph's nodes (in topological order), producers and consumers.</summary>
    public OnnxGraphIndex Index { get; }

    public string TokenInput { get; }
    public string FinalOutput { get; }

    /// <summary>Every tensor that alone is a cut, in flow order.</summary>
    public IReadOnlyList<string> Cuts => _candidates.Values.Where(c => c.Crossing.Length == 1).OrderBy(c => c.Size).Select(c => c.Crossing[0]).ToList();

    /// <summary>The boundary that starts each block, then the one that ends the last block, each named by its tensors joined with '+'.</summary>
    public IReadOnlyList<string> BlockBoundaries => _boundaries.Select(b => b.Name).ToList();

    /// <summary>The tensors crossing each block boundary.</summary>
    public IReadOnlyList<IReadOnlyList<string>> BoundaryTensors => _boundaries.Select(b => (IReadOnlyList<string>)b.Crossing).ToList();

    /// <summary>Why blocks were fused (a tensor crossing several boundaries), one line each.</summary>
    public IReadOnlyList<string> Fusions => _fusions;

    /// <summary>Each KV output and the past input it is bound to.</summary>
    public IReadOnlyDictionary<string, string> PastOf => _pastOf;

    public int BlockCount => _boundaries.Count - 1;

    public IReadOnlyList<NodeProto> Nodes => _nodes;

    /// <summary>Builds the standalone graph between two boundaries (by index into <see cref="BlockBoundaries"/>; null from = the token input, null to = the final output).</summary>
    internal StageGraph Extract(int? fromIndex, int? toIndex)
    {
        var from = fromIndex is { } f ? _boundaries[f] : null;
        var to = toIndex is { } t ? _boundaries[t] : null;
        var stageMain = new HashSet<int>(Enumerable.Range(0, _nodes.Count).Where(i => _isMain[i] && (to is null || to.Prefix[i]) && (from is null || !from.Prefix[i])));
        var extra = new List<NodeProto>();
        var initializers = new List<TensorProto>();
        var stageInputs = new List<string>();
        var fromTensors = from?.Crossing ?? [];
        string activationInput;
        if (from is null) activationInput = TokenInput;
        else if (from.Crossing.Length == 1) activationInput = from.Crossing[0];
        else
        {
            activationInput = from.Name;
            var split = new NodeProto { OpType = "Split", Name = $"mesh_split_{fromIndex}" };
            split.Input.Add(activationInput);
            split.Output.AddRange(from.Crossing);
            split.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 });
            if (Index.Opset >= 18) split.Attribute.Add(new AttributeProto { Name = "num_outputs", Type = AttributeProto.Types.AttributeType.Int, I = from.Crossing.Length });
            extra.Add(split);
        }
        stageInputs.Add(activationInput);

        // Side nodes are pulled in with their inputs. Below a Shape/Size node only shapes matter: there the token input is
        // a zero stand-in of its shape (the leading dimensions of the boundary tensor), main nodes before the boundary are
        // recomputed from it if they read no weights, and a past input of another stage is replaced by one of this
        // stage's pasts declared with the same dimensions.
        var ownPasts = stageMain.SelectMany(i => _nodes[i].Output).Where(_pastOf.ContainsKey).Select(o => _pastOf[o]).ToHashSet(StringComparer.Ordinal);
        var included = new HashSet<int>(stageMain);
        var pending = new Stack<(int Node, bool ShapeOnly)>(stageMain.Select(i => (i, false)));
        var replaced = new Dictionary<int, List<(string From, string To)>>();
        var standIn = false;
        while (pending.Count > 0)
        {
            var (node, shapeOnly) = pending.Pop();
            var below = shapeOnly || ShapeOps.Contains(_nodes[node].OpType);
            foreach (var input in _nodes[node].Input)
            {
                if (input.Length == 0 || fromTensors.Contains(input)) continue;
                if (Index.IsInitializer(input))
                {
                    if (below && _isMain[node] && !stageMain.Contains(node) && Index.Graph.Initializer.First(t => t.Name == input).Dims.Aggregate(1L, (a, b) => a * b) > 4096)
                        throw Refuse($"the shape of a tensor before the boundary '{from!.Name}' is read after it, and recomputing it would need the weight '{input}'");
                    continue;
                }
                if (input == TokenInput && from is not null)
                {
                    if (!below)
                        throw Refuse($"node '{_nodes[node].Name}' ({_nodes[node].OpType}) reads the values of '{TokenInput}' after the boundary '{from.Name}'");
                    standIn = true;
                    continue;
                }
                if (Index.GraphInputs.Contains(input))
                {
                    var fed = input;
                    if (from is not null && _pastOf.ContainsValue(input) && !ownPasts.Contains(input))
                    {
                        if (!below)
                            throw Refuse($"node '{_nodes[node].Name}' reads the values of the past input '{input}' outside the stage that owns it");
                        var declared = Dims(input);
                        fed = ownPasts.Order(StringComparer.Ordinal).FirstOrDefault(p => Dims(p) == declared)
                            ?? throw Refuse($"the shape of the past input '{input}' is read in a stage that holds no past declared as [{declared}]");
                        Replace(node, input, fed);
                    }
                    if (!stageInputs.Contains(fed)) stageInputs.Add(fed);
                    continue;
                }
                var source = ProducerOf(input);
                if (included.Contains(source)) continue;
                if (_isMain[source] && below && from is not null && !stageMain.Contains(source)
                    && from.Crossing.FirstOrDefault(b => ShapeTwin(input, b)) is { } twin)
                {
                    // Only its shape is read, and elementwise ops carry that shape to a boundary tensor: read the boundary's.
                    Replace(node, input, twin);
                    continue;
                }
                if (_isMain[source] && !below)
                    throw Refuse($"tensor '{input}' crosses the boundary {(from is null ? "" : $"'{from.Name}' ")}besides the boundary tensors");
                included.Add(source);
                pending.Push((source, below));
            }
        }

        void Replace(int node, string was, string now)
        {
            if (!replaced.TryGetValue(node, out var list)) replaced[node] = list = [];
            list.Add((was, now));
        }

        var stageNodes = new List<NodeProto>(extra);
        if (standIn)
        {
            var rank = Index.Graph.Input.First(v => v.Name == TokenInput).Type.TensorType.Shape?.Dim.Count ?? 2;
            var tokenType = Index.Graph.Input.First(v => v.Name == TokenInput).Type.TensorType.ElemType;
            initializers.Add(Int64Initializer($"mesh_zero_{fromIndex}", 0));
            initializers.Add(Int64Initializer($"mesh_token_rank_{fromIndex}", rank));
            var full = new NodeProto { OpType = "Shape", Name = $"mesh_boundary_shape_{fromIndex}" };
            full.Input.Add(from!.Crossing[0]);
            full.Output.Add($"mesh_boundary_shape_{fromIndex}");
            var slice = new NodeProto { OpType = "Slice", Name = $"mesh_token_shape_{fromIndex}" };
            slice.Input.AddRange([full.Output[0], $"mesh_zero_{fromIndex}", $"mesh_token_rank_{fromIndex}"]);
            slice.Output.Add($"mesh_token_shape_{fromIndex}");
            var zeros = new NodeProto { OpType = "ConstantOfShape", Name = $"mesh_token_stand_in_{fromIndex}" };
            zeros.Input.Add(slice.Output[0]);
            zeros.Output.Add(TokenInput);
            var zero = new TensorProto { DataType = tokenType };
            zero.Dims.Add(1);
            if (tokenType == (int)TensorProto.Types.DataType.Int32) zero.Int32Data.Add(0); else zero.Int64Data.Add(0);
            zeros.Attribute.Add(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = zero });
            stageNodes.AddRange([full, slice, zeros]);
        }
        foreach (var i in Enumerable.Range(0, _nodes.Count).Where(included.Contains))
        {
            if (!replaced.TryGetValue(i, out var swap)) { stageNodes.Add(_nodes[i]); continue; }
            var clone = _nodes[i].Clone();
            foreach (var (was, now) in swap)
                for (var j = 0; j < clone.Input.Count; j++) if (clone.Input[j] == was) clone.Input[j] = now;
            stageNodes.Add(clone);
        }

        var produced = stageMain.SelectMany(i => _nodes[i].Output).ToHashSet(StringComparer.Ordinal);
        var outputs = new List<string>();
        string activationOutput;
        if (to is null) activationOutput = FinalOutput;
        else if (to.Crossing.Length == 1) activationOutput = to.Crossing[0];
        else
        {
            activationOutput = to.Name;
            var concat = new NodeProto { OpType = "Concat", Name = $"mesh_concat_{toIndex}" };
            concat.Input.AddRange(to.Crossing);
            concat.Output.Add(activationOutput);
            concat.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = -1 });
            stageNodes.Add(concat);
        }
        outputs.Add(activationOutput);
        outputs.AddRange(Index.Graph.Output.Select(o => o.Name).Where(o => o != activationOutput && produced.Contains(o)));
        return new StageGraph(stageNodes, stageInputs, outputs, initializers, activationInput, activationOutput,
            from?.Crossing ?? [], to?.Crossing ?? []);
    }

    internal ValueInfoProto ValueInfoFor(string tensor)
    {
        var known = Index.Graph.Input.Concat(Index.Graph.Output).Concat(Index.Graph.ValueInfo).FirstOrDefault(v => v.Name == tensor);
        if (known is not null) return known;
        var boundary = _boundaries.FirstOrDefault(b => b.Name == tensor);
        var typed = boundary is null ? null : Index.Graph.ValueInfo.Concat(Index.Graph.Output).FirstOrDefault(v => v.Name == boundary.Crossing[0]);
        var elementType = typed?.Type.TensorType.ElemType ?? Index.Graph.Output.First(o => o.Name == FinalOutput).Type.TensorType.ElemType;
        var info = new ValueInfoProto { Name = tensor, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = elementType } } };
        // A set travels concatenated on the last axis: declared as its first member with the members' widths summed, when all
        // are declared, so a node can size its activations (the throughput probe) and an executor can check them.
        var members = boundary?.Crossing.Select(c => Index.Graph.ValueInfo.Concat(Index.Graph.Output).FirstOrDefault(v => v.Name == c)?.Type.TensorType.Shape).ToList();
        if (members is { Count: > 0 } && members.All(m => m is { Dim.Count: > 0 } && m.Dim[^1].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue))
        {
            var shape = members[0]!.Clone();
            shape.Dim[^1].DimValue = members.Sum(m => m!.Dim[^1].DimValue);
            info.Type.TensorType.Shape = shape;
        }
        return info;
    }

    private string ChooseTokenInput(string? named, List<string> inputs, List<string> outputs)
    {
        if (named is not null)
            return inputs.Contains(named) ? named : throw Refuse($"the token input '{named}' is not an input of the graph ({string.Join(", ", inputs)})");
        if (inputs.Contains("input_ids")) return "input_ids";
        var dependencies = InputDependencies();
        var sources = inputs.Where(input => outputs.All(o => dependencies[ProducerOf(o)].Contains(input))).ToList();
        return sources.Count == 1 ? sources[0]
            : throw Refuse(sources.Count == 0
                ? "no input is named input_ids and none feeds every output; name the token input (--token-input)"
                : $"no input is named input_ids and several feed every output ({string.Join(", ", sources)}); name the token input (--token-input)");
    }

    private string ChooseFinalOutput(string? named, List<string> inputs, List<string> outputs)
    {
        if (named is not null)
            return outputs.Contains(named) ? named : throw Refuse($"the output '{named}' is not an output of the graph ({string.Join(", ", outputs)})");
        if (outputs.Contains("logits")) return "logits";
        var dependencies = InputDependencies();
        var finals = outputs.Where(o => inputs.All(input => dependencies[ProducerOf(o)].Contains(input))).ToList();
        if (finals.Count > 1)
        {
            // KV outputs have the element type and rank of a past input; the final state does not.
            var pastLike = inputs.Where(i => i != TokenInput).Select(i => ValueInfoFor(i).Type.TensorType)
                .Select(t => (t.ElemType, t.Shape?.Dim.Count ?? -1)).ToHashSet();
            finals = finals.Where(o => !pastLike.Contains((ValueInfoFor(o).Type.TensorType.ElemType, ValueInfoFor(o).Type.TensorType.Shape?.Dim.Count ?? -1))).ToList();
        }
        return finals.Count == 1 ? finals[0]
            : throw Refuse(finals.Count == 0
                ? "no output is named logits and none depends on every input; name the output (--output)"
                : $"no output is named logits and several depend on every input ({string.Join(", ", finals)}); name the output (--output)");
    }

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
    /// Binds each KV output to the past input nearest to it by data flow (same element type and rank). Outputs of one
    /// node tied between the same inputs of that node (fused attention: present key and value from past key and value)
    /// are paired in argument order.
    /// </summary>
    private void BindState(List<string> outputs)
    {
        var pasts = Index.GraphInputs.Where(i => i != TokenInput).ToList();
        var ties = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var output in outputs.Where(o => o != FinalOutput))
        {
            var type = ValueInfoFor(output).Type.TensorType;
            var candidates = pasts.Where(p => ValueInfoFor(p).Type.TensorType is var pt && pt.ElemType == type.ElemType
                && (pt.Shape is null || type.Shape is null || pt.Shape.Dim.Count == type.Shape.Dim.Count)).ToHashSet(StringComparer.Ordinal);
            var nearest = Nearest(output, candidates);
            if (nearest.Count == 0)
                throw Refuse($"output '{output}' does not depend on any past-state input of its type");
            ties[output] = nearest;
        }
        foreach (var group in ties.GroupBy(t => (Producer: ProducerOf(t.Key), Key: string.Join('\n', t.Value.Order(StringComparer.Ordinal)))))
        {
            var producer = _nodes[group.Key.Producer];
            var presents = group.Select(g => g.Key).OrderBy(o => producer.Output.IndexOf(o)).ToList();
            var candidates = group.First().Value;
            if (candidates.Count != presents.Count || candidates.Any(c => !producer.Input.Contains(c)) && candidates.Count > 1)
                throw Refuse($"outputs {string.Join(", ", presents)} are equally near past inputs {string.Join(", ", candidates)}, so their pairing is ambiguous");
            var ordered = candidates.OrderBy(c => producer.Input.IndexOf(c)).ToList();
            for (var i = 0; i < presents.Count; i++) _pastOf[presents[i]] = ordered[i];
        }
        foreach (var twice in _pastOf.GroupBy(p => p.Value).Where(g => g.Count() > 1))
            throw Refuse($"past input '{twice.Key}' is the nearest past of several outputs ({string.Join(", ", twice.Select(p => p.Key))})");
    }

    private List<string> Nearest(string output, HashSet<string> candidates)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal) { output };
        var frontier = new List<string> { output };
        while (frontier.Count > 0)
        {
            var next = new List<string>();
            foreach (var tensor in frontier)
                if (Index.Producer(tensor) is { } node)
                    foreach (var input in node.Input)
                        if (input.Length > 0 && seen.Add(input)) next.Add(input);
            var found = next.Where(candidates.Contains).ToList();
            if (found.Count > 0) return found;
            frontier = next;
        }
        return [];
    }

    private int ProducerOf(string tensor) => Index.ProducerIndex(tensor) ?? throw Refuse($"tensor '{tensor}' is not computed by any node");

    private HashSet<int> MainAncestors(int node)
    {
        var set = new HashSet<int> { node };
        var stack = new Stack<int>();
        stack.Push(node);
        while (stack.Count > 0)
            foreach (var input in _nodes[stack.Pop()].Input)
                if (input.Length > 0 && Index.ProducerIndex(input) is { } p && _isMain[p] && set.Add(p)) stack.Push(p);
        return set;
    }

    /// <summary>The prefix ending at node <paramref name="end"/> (its main ancestors, plus main nodes feeding only KV outputs once their inputs are in) and what crosses it.</summary>
    private Candidate? Evaluate(int end)
    {
        var prefix = new bool[_nodes.Count];
        foreach (var i in MainAncestors(end)) prefix[i] = true;
        for (var i = 0; i < _nodes.Count; i++)
            if (_isDangling[i] && _nodes[i].Input.All(x => x.Length == 0 || x != TokenInput && (Index.ProducerIndex(x) is not { } p || !_isMain[p] || prefix[p])))
                prefix[i] = true;
        var crossing = new List<(int Producer, int Slot, string Tensor)>();
        for (var i = 0; i < _nodes.Count; i++)
        {
            if (!_isMain[i] || prefix[i]) continue;
            foreach (var input in _nodes[i].Input)
            {
                if (input == TokenInput) return null;
                if (input.Length == 0 || Index.ProducerIndex(input) is not { } p || !_isMain[p] || !prefix[p]) continue;
                if (crossing.Any(c => c.Tensor == input)) continue;
                crossing.Add((p, _nodes[p].Output.IndexOf(input), input));
                if (crossing.Count > MaxBoundaryTensors) return null;
            }
        }
        if (crossing.Count == 0) return null;
        var tensors = crossing.OrderBy(c => c.Producer).ThenBy(c => c.Slot).Select(c => c.Tensor).ToArray();
        return new Candidate(end, prefix, prefix.Count(b => b), tensors, string.Join('+', tensors));
    }

    private List<Candidate> FindBlockBoundaries()
    {
        var pasts = _pastOf.Values.ToList();
        if (pasts.Count == 0)
            throw Refuse("the graph has no KV-cache outputs, so it has no blocks to cut");
        // Main nodes depending on each past input, and the first of them.
        var pastDependents = new Dictionary<string, bool[]>(StringComparer.Ordinal);
        foreach (var past in pasts)
        {
            var depends = new bool[_nodes.Count];
            for (var i = 0; i < _nodes.Count; i++)
                depends[i] = _nodes[i].Input.Any(x => x == past || (x.Length > 0 && Index.ProducerIndex(x) is { } p && depends[p]));
            for (var i = 0; i < _nodes.Count; i++) depends[i] &= _isMain[i];
            pastDependents[past] = depends;
        }
        int FirstUse(string past) => Array.IndexOf(pastDependents[past], true) is var i and >= 0 ? i : int.MaxValue;
        var order = pasts.OrderBy(FirstUse).ToList();
        if (order.Any(p => FirstUse(p) == int.MaxValue))
            throw Refuse($"past input '{order.First(p => FirstUse(p) == int.MaxValue)}' does not meet the token path");
        var presentsOf = _pastOf.GroupBy(p => p.Value).ToDictionary(g => g.Key, g => g.Select(p => p.Key).ToList(), StringComparer.Ordinal);

        // For each node, the latest (in first-use order) past input it depends on; a prefix avoids the pasts after k when none of its nodes reaches past k.
        var orderIndex = order.Select((p, i) => (p, i)).ToDictionary(x => x.p, x => x.i, StringComparer.Ordinal);
        var latestPast = new int[_nodes.Count];
        for (var i = 0; i < _nodes.Count; i++)
        {
            latestPast[i] = -1;
            foreach (var x in _nodes[i].Input)
                latestPast[i] = Math.Max(latestPast[i], orderIndex.TryGetValue(x, out var o) ? o : x.Length > 0 && Index.ProducerIndex(x) is { } p ? latestPast[p] : -1);
        }
        var reach = _candidates.Values.ToDictionary(c => c, c => Enumerable.Range(0, _nodes.Count).Where(i => c.Prefix[i] && _isMain[i]).Select(i => latestPast[i]).DefaultIfEmpty(-1).Max());
        bool Avoids(Candidate c, int firstLater) => reach[c] < firstLater;
        bool Holds(Candidate c, IEnumerable<string> done) => done.SelectMany(p => presentsOf[p]).All(o => c.Prefix[ProducerOf(o)]);
        bool Contains(Candidate outer, Candidate inner) => inner.Prefix.Select((b, i) => !b || outer.Prefix[i]).All(x => x);
        static Candidate? Pick(IEnumerable<Candidate> options, bool latest)
        {
            var list = options.ToList();
            if (list.Count == 0) return null;
            var fewest = list.Min(c => c.Crossing.Length);
            var best = list.Where(c => c.Crossing.Length == fewest);
            return latest ? best.MaxBy(c => c.Size) : best.MinBy(c => c.Size);
        }

        var first = Pick(_candidates.Values.Where(c => Avoids(c, 0)), latest: true)
            ?? throw Refuse("no cut separates the token input from the first KV-cache input's use");
        var boundaries = new List<Candidate> { first };
        var done = new List<string>();
        for (var k = 0; k < order.Count; k++)
        {
            done.Add(order[k]);
            if (k + 1 == order.Count) break;
            var next = Pick(_candidates.Values.Where(c => Contains(c, boundaries[^1]) && Holds(c, done) && Avoids(c, k + 1)), latest: true);
            if (next is not null && next != boundaries[^1]) boundaries.Add(next);
        }
        // The last block ends at the last residual sum (an Add of two main tensors) after the last KV output, so the tail
        // keeps the final norm; a fused export has none there and ends at the latest cut with the fewest tensors.
        var after = _candidates.Values.Where(c => Contains(c, boundaries[^1]) && Holds(c, order)).ToList();
        var sums = after.Where(c => c.Crossing.Length == 1 && _nodes[c.End].OpType == "Add"
            && _nodes[c.End].Input.All(x => Index.ProducerIndex(x) is { } p && _isMain[p])).ToList();
        var end = (sums.Count > 0 ? sums.MaxBy(c => c.Size) : Pick(after, latest: true))
            ?? throw Refuse("no cut follows the last KV-cache output");
        boundaries.Add(end);

        // A tensor crossing two boundaries in a row would have to pass through a stage: fuse the blocks it spans.
        for (var i = 1; i < boundaries.Count;)
        {
            var shared = boundaries[i].Crossing.Intersect(boundaries[i - 1].Crossing).ToList();
            if (shared.Count == 0) { i++; continue; }
            if (boundaries.Count == 2)
                throw Refuse($"tensor '{shared[0]}' skips across every block (a skip connection from '{boundaries[0].Name}' to the end), so there is no block to cut");
            _fusions.Add($"tensor '{shared[0]}' crosses the boundaries '{boundaries[i - 1].Name}' and '{boundaries[i].Name}' (a skip connection across blocks), so the blocks on both sides are one");
            boundaries.RemoveAt(i == boundaries.Count - 1 ? i - 1 : i);
            i = 1;
        }
        return boundaries;
    }

    private static readonly HashSet<string> ShapeKeeping = new(StringComparer.Ordinal)
        { "Identity", "Cast", "Relu", "Gelu", "Tanh", "Sigmoid", "Erf", "Neg", "Add", "Sub", "Mul", "Div", "Pow" };

    /// <summary>True when elementwise ops (whose other operands are main tensors or one-element constants) lead from <paramref name="tensor"/> to <paramref name="target"/>, so both have one shape.</summary>
    private bool ShapeTwin(string tensor, string target)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal) { tensor };
        var stack = new Stack<string>();
        stack.Push(tensor);
        while (stack.Count > 0)
        {
            var current = stack.Pop();
            if (current == target) return true;
            foreach (var consumer in Index.Consumers(current))
            {
                if (!ShapeKeeping.Contains(consumer.OpType) || consumer.Output.Count != 1) continue;
                var operandsKeep = consumer.Input.All(x => x == current || (Index.ProducerIndex(x) is { } p && _isMain[p])
                    || (Index.Dims(x) is { } dims && dims.Aggregate(1L, (a, b) => a * b) <= 1));
                if (operandsKeep && seen.Add(consumer.Output[0])) stack.Push(consumer.Output[0]);
            }
        }
        return false;
    }

    private string Dims(string input) =>
        string.Join(", ", ValueInfoFor(input).Type.TensorType.Shape?.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam) ?? []);

    private static TensorProto Int64Initializer(string name, long value)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.Add(1);
        tensor.Int64Data.Add(value);
        return tensor;
    }

    internal static MeshException Refuse(string why) => new(MeshErrorCode.NoCutPoint, $"cannot split this graph: {why}");

    private sealed record Candidate(int End, bool[] Prefix, int Size, string[] Crossing, string Name);
}

internal sealed record StageGraph(IReadOnlyList<NodeProto> Nodes, IReadOnlyList<string> Inputs, IReadOnlyList<string> Outputs,
    IReadOnlyList<TensorProto> Initializers, string ActivationInput, string ActivationOutput,
    IReadOnlyList<string> InputTensors, IReadOnlyList<string> OutputTensors);
