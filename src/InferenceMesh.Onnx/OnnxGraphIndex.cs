using System.Runtime.InteropServices;
using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>
/// Read-only indexes over an ONNX graph, shared by the splitter and the ILGPU recogniser: the nodes in
/// topological order, the producer and consumers of every tensor, the graph inputs that are not initializers,
/// and the values of constants (initializers and <c>Constant</c> nodes). Names are used only to connect nodes,
/// never for their meaning. A graph whose tensors are produced twice, or whose nodes read a tensor nothing
/// provides or form a cycle, is refused with <see cref="MeshErrorCode.InvalidOnnx"/>.
/// </summary>
public sealed class OnnxGraphIndex
{
    private static readonly IReadOnlyList<NodeProto> None = [];
    private readonly NodeProto[] _nodes;
    private readonly Dictionary<string, int> _producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<NodeProto>> _consumers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TensorProto> _constants = new(StringComparer.Ordinal);
    private readonly HashSet<string> _initializers;

    public OnnxGraphIndex(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        Graph = model.Graph ?? throw Invalid("the model has no graph");
        foreach (var opset in model.OpsetImport)
            if (opset.Domain is "" or "ai.onnx") Opset = opset.Version;
        _initializers = Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (var tensor in Graph.Initializer) _constants[tensor.Name] = tensor;
        GraphInputs = Graph.Input.Select(i => i.Name).Where(n => !_initializers.Contains(n)).ToHashSet(StringComparer.Ordinal);
        GraphOutputs = Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        _nodes = TopologicalOrder(Graph, _initializers, GraphInputs);
        for (var i = 0; i < _nodes.Length; i++)
        {
            var node = _nodes[i];
            foreach (var output in node.Output)
                if (output.Length > 0 && !_producers.TryAdd(output, i))
                    throw Invalid($"tensor '{output}' is produced twice");
            foreach (var input in node.Input)
            {
                if (input.Length == 0) continue;
                if (!_consumers.TryGetValue(input, out var list)) _consumers[input] = list = [];
                if (!list.Contains(node)) list.Add(node);
            }
            if (node.OpType == "Constant" && node.Output.Count == 1 && ConstantValue(node) is { } value)
                _constants[node.Output[0]] = value;
        }
    }

    public GraphProto Graph { get; }

    /// <summary>The version of the standard ONNX opset the model imports (0 if none).</summary>
    public long Opset { get; }

    /// <summary>Every node, each after the nodes producing its inputs.</summary>
    public IReadOnlyList<NodeProto> Nodes => _nodes;

    /// <summary>The graph inputs that are not initializers: what a caller feeds.</summary>
    public IReadOnlySet<string> GraphInputs { get; }

    public IReadOnlySet<string> GraphOutputs { get; }

    public bool IsInitializer(string tensor) => _initializers.Contains(tensor);

    /// <summary>The position in <see cref="Nodes"/> of the node producing <paramref name="tensor"/>, or null for a graph input, an initializer or an unknown name.</summary>
    public int? ProducerIndex(string tensor) => _producers.TryGetValue(tensor, out var index) ? index : null;

    public NodeProto? Producer(string tensor) => _producers.TryGetValue(tensor, out var index) ? _nodes[index] : null;

    public IReadOnlyList<NodeProto> Consumers(string tensor) => _consumers.TryGetValue(tensor, out var list) ? list : None;

    public IEnumerable<NodeProto> Consumers(string tensor, string opType) => Consumers(tensor).Where(n => n.OpType == opType);

    public bool IsConstant(string tensor) => _constants.ContainsKey(tensor);

    public long[]? Dims(string tensor) => _constants.TryGetValue(tensor, out var t) ? t.Dims.ToArray() : null;

    /// <summary>The float values of a constant tensor, or null if <paramref name="tensor"/> is not a float constant.</summary>
    public float[]? Floats(string tensor)
    {
        if (!_constants.TryGetValue(tensor, out var t) || t.DataType != (int)TensorProto.Types.DataType.Float) return null;
        CheckInline(t);
        if (!t.RawData.IsEmpty)
        {
            if (t.RawData.Length % 4 != 0) throw Invalid($"float tensor '{tensor}' has {t.RawData.Length} raw bytes");
            return MemoryMarshal.Cast<byte, float>(t.RawData.Span).ToArray();
        }
        return t.FloatData.ToArray();
    }

    /// <summary>The integer values of an int64 or int32 constant tensor, or null.</summary>
    public long[]? Int64s(string tensor)
    {
        if (!_constants.TryGetValue(tensor, out var t)) return null;
        CheckInline(t);
        if (t.DataType == (int)TensorProto.Types.DataType.Int64)
            return !t.RawData.IsEmpty ? MemoryMarshal.Cast<byte, long>(t.RawData.Span).ToArray() : t.Int64Data.ToArray();
        if (t.DataType == (int)TensorProto.Types.DataType.Int32)
            return (!t.RawData.IsEmpty ? MemoryMarshal.Cast<byte, int>(t.RawData.Span).ToArray() : t.Int32Data.ToArray()).Select(v => (long)v).ToArray();
        return null;
    }

    /// <summary>A float constant holding exactly one value (any shape of one element).</summary>
    public float? Scalar(string tensor) => Floats(tensor) is [var value] ? value : null;

    public static long? IntAttribute(NodeProto node, string name) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.I : null;

    public static long[]? IntsAttribute(NodeProto node, string name) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } a ? a.Ints.ToArray() : null;

    /// <summary>True when <paramref name="tensor"/> is computed (transitively) from <paramref name="input"/>.</summary>
    public bool DependsOn(string tensor, string input)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var stack = new Stack<string>();
        stack.Push(tensor);
        while (stack.Count > 0)
        {
            var current = stack.Pop();
            if (current == input) return true;
            if (!seen.Add(current) || Producer(current) is not { } node) continue;
            foreach (var i in node.Input)
                if (i.Length > 0) stack.Push(i);
        }
        return false;
    }

    /// <summary>
    /// The model as ONNX Runtime loads it when a tensor is defined by several nodes: the later definition wins. Earlier
    /// definitions are renamed out of the way, and a node left with no output anything reads is dropped. Returns
    /// <paramref name="model"/> itself when every tensor is defined once.
    /// </summary>
    public static ModelProto LaterDefinitionWins(ModelProto model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        var twice = false;
        for (var i = 0; i < model.Graph.Node.Count; i++)
            foreach (var output in model.Graph.Node[i].Output)
                if (output.Length > 0) twice |= !last.TryAdd(output, i) | (last[output] = i) < 0;
        if (!twice) return model;
        var copy = model.Clone();
        var kept = new List<NodeProto>();
        for (var i = 0; i < copy.Graph.Node.Count; i++)
        {
            var node = copy.Graph.Node[i];
            var shadowed = 0;
            for (var j = 0; j < node.Output.Count; j++)
                if (node.Output[j].Length > 0 && last[node.Output[j]] != i)
                {
                    node.Output[j] = $"{node.Output[j]}__shadowed_{i}";
                    shadowed++;
                }
            if (shadowed == 0 || node.Output.Any(o => o.Length > 0 && !o.Contains("__shadowed_", StringComparison.Ordinal))) kept.Add(node);
        }
        copy.Graph.Node.Clear();
        copy.Graph.Node.AddRange(kept);
        return copy;
    }

    private static MeshException Invalid(string message) => new(MeshErrorCode.InvalidOnnx, message);

    private static void CheckInline(TensorProto t)
    {
        if (t.DataLocation == TensorProto.Types.DataLocation.External || t.ExternalData.Count > 0)
            throw Invalid($"tensor '{t.Name}' keeps its data in an external file, which is not read here");
    }

    private static NodeProto[] TopologicalOrder(GraphProto graph, HashSet<string> initializers, IReadOnlySet<string> inputs)
    {
        var available = new HashSet<string>(initializers.Concat(inputs), StringComparer.Ordinal) { "" };
        var remaining = graph.Node.ToList();
        var ordered = new List<NodeProto>(remaining.Count);
        var waitingOn = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        var missing = new Dictionary<NodeProto, int>(ReferenceEqualityComparer.Instance);
        var ready = new Queue<NodeProto>();
        foreach (var node in remaining)
        {
            var count = 0;
            foreach (var input in node.Input.Distinct())
            {
                if (available.Contains(input)) continue;
                count++;
                if (!waitingOn.TryGetValue(input, out var list)) waitingOn[input] = list = [];
                list.Add(node);
            }
            missing[node] = count;
            if (count == 0) ready.Enqueue(node);
        }
        while (ready.Count > 0)
        {
            var node = ready.Dequeue();
            ordered.Add(node);
            foreach (var output in node.Output)
                if (waitingOn.Remove(output, out var consumers))
                    foreach (var consumer in consumers)
                        if (--missing[consumer] == 0) ready.Enqueue(consumer);
        }
        if (ordered.Count != remaining.Count)
            throw Invalid($"{remaining.Count - ordered.Count} nodes have inputs no node or graph input provides, or form a cycle");
        return ordered.ToArray();
    }

    private static TensorProto? ConstantValue(NodeProto node)
    {
        foreach (var attribute in node.Attribute)
        {
            switch (attribute.Name)
            {
                case "value":
                    return attribute.T;
                case "value_float":
                    return Make(TensorProto.Types.DataType.Float, [], t => t.FloatData.Add(attribute.F));
                case "value_floats":
                    return Make(TensorProto.Types.DataType.Float, [attribute.Floats.Count], t => t.FloatData.AddRange(attribute.Floats));
                case "value_int":
                    return Make(TensorProto.Types.DataType.Int64, [], t => t.Int64Data.Add(attribute.I));
                case "value_ints":
                    return Make(TensorProto.Types.DataType.Int64, [attribute.Ints.Count], t => t.Int64Data.AddRange(attribute.Ints));
            }
        }
        return null;

        static TensorProto Make(TensorProto.Types.DataType type, long[] dims, Action<TensorProto> fill)
        {
            var tensor = new TensorProto { DataType = (int)type };
            tensor.Dims.AddRange(dims);
            fill(tensor);
            return tensor;
        }
    }
}
