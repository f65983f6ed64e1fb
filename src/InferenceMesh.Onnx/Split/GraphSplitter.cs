using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// Cuts a decoder graph into Head, block-range stages and Tail, each a standalone ONNX model. Only the
/// residual stream crosses a cut; side tensors (rotary tables, masks) are recomputed in every stage
/// from its own context inputs. A graph without the needed structure is refused with <see cref="MeshErrorCode.NoCutPoint"/>.
/// </summary>
public static class GraphSplitter
{
    public static IReadOnlyList<SplitStage> Split(ModelProto model, IReadOnlyList<BlockRange> ranges) =>
        Split(model, new GraphAnalysis(model), ranges);

    public static IReadOnlyList<SplitStage> Split(ModelProto model, GraphAnalysis analysis, IReadOnlyList<BlockRange> ranges)
    {
        BlockRange.ParseContiguousList(string.Join(',', ranges.Select(r => $"{r.Start}:{r.End}")), analysis.BlockCount);
        var boundaries = analysis.BlockBoundaries;
        var stages = new List<SplitStage>
        {
            Build(model, analysis, StageKind.Head, null, "head.onnx", null, boundaries[0], analysis.TokenInput),
        };
        foreach (var range in ranges)
            stages.Add(Build(model, analysis, StageKind.Blocks, range, $"blocks_{range.Start}_{range.End}.onnx", boundaries[range.Start], boundaries[range.End], null));
        stages.Add(Build(model, analysis, StageKind.Tail, null, "tail.onnx", boundaries[^1], analysis.FinalOutput, null));
        return stages;
    }

    /// <summary>Describes the unsplit model as a single stage: token ids in, logits out, every KV pair bound.</summary>
    public static StageDescriptor DescribeWhole(ModelProto model, string file)
    {
        var analysis = new GraphAnalysis(model);
        var graph = model.Graph;
        var inputs = graph.Input.Where(i => !analysis.Index.IsInitializer(i.Name)).Select(i => i.Name).ToList();
        var outputs = graph.Output.Select(o => o.Name).ToList();
        var state = BindState(analysis, analysis.Nodes, inputs, outputs);
        var context = inputs.Where(i => i != analysis.TokenInput && state.All(s => s.Past != i)).ToList();
        return new StageDescriptor(StageKind.Whole, new BlockRange(0, analysis.BlockCount), file, "", analysis.TokenInput, analysis.FinalOutput,
            inputs.Select(i => Info(analysis.ValueInfoFor(i))).ToList(), outputs.Select(o => Info(analysis.ValueInfoFor(o))).ToList(), context, state);
    }

    private static SplitStage Build(ModelProto source, GraphAnalysis analysis, StageKind kind, BlockRange? range, string file,
        string? from, string to, string? tokenInput)
    {
        var extracted = analysis.Extract(from, to);
        var graph = new GraphProto { Name = $"{source.Graph.Name}:{kind}{range}" };
        graph.Node.AddRange(extracted.Nodes.Select(n => n.Clone()));
        var referenced = extracted.Nodes.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        graph.Initializer.AddRange(source.Graph.Initializer.Where(t => referenced.Contains(t.Name)).Select(t => t.Clone()));
        graph.Input.AddRange(extracted.Inputs.Select(i => analysis.ValueInfoFor(i).Clone()));
        graph.Output.AddRange(extracted.Outputs.Select(o => analysis.ValueInfoFor(o).Clone()));

        var model = new ModelProto { IrVersion = source.IrVersion, ProducerName = source.ProducerName, ProducerVersion = source.ProducerVersion, Graph = graph };
        model.OpsetImport.AddRange(source.OpsetImport.Select(o => o.Clone()));

        var activationInput = tokenInput ?? from!;
        var state = BindState(analysis, extracted.Nodes, extracted.Inputs, extracted.Outputs);
        var context = extracted.Inputs.Where(i => i != activationInput && state.All(s => s.Past != i)).ToList();
        var descriptor = new StageDescriptor(kind, range, file, "", activationInput, to,
            graph.Input.Select(Info).ToList(), graph.Output.Select(Info).ToList(), context, state);
        return new SplitStage(descriptor, model);
    }

    /// <summary>Pairs each KV output with the graph input its producing node appends to (same element type).</summary>
    private static List<StateBinding> BindState(GraphAnalysis analysis, IReadOnlyList<NodeProto> nodes, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs)
    {
        var bindings = new List<StateBinding>();
        foreach (var output in outputs)
        {
            if (output == analysis.FinalOutput || analysis.BlockBoundaries.Contains(output)) continue;
            var producer = analysis.Index.Producer(output)!;
            var type = analysis.ValueInfoFor(output).Type.TensorType.ElemType;
            var candidates = producer.Input.Where(i => inputs.Contains(i) && analysis.ValueInfoFor(i).Type.TensorType.ElemType == type).Distinct().ToList();
            if (candidates.Count != 1)
                throw new MeshException(MeshErrorCode.NoCutPoint, $"cannot split this graph: output '{output}' is not the append of one past-state input");
            bindings.Add(new StateBinding(candidates[0], output));
        }
        return bindings;
    }

    private static TensorInfo Info(ValueInfoProto value)
    {
        var tensorType = value.Type.TensorType;
        var shape = tensorType.Shape?.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam).ToList() ?? [];
        return new TensorInfo(value.Name, (DType)tensorType.ElemType, shape);
    }
}
