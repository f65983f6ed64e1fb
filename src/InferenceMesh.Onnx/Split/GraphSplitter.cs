using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx.Split;

/// <summary>
/// Cuts a decoder graph into Head, block-range stages and Tail, each a standalone ONNX model. Only the
/// boundary tensors cross a cut (a set of them travels as one tensor, concatenated on the last axis); side
/// tensors (rotary tables, masks, shapes of the token input) are recomputed in every stage from its own
/// inputs. Contrib-domain nodes stay in their stage as they are. A graph without the needed structure is
/// refused with <see cref="MeshErrorCode.NoCutPoint"/>.
/// </summary>
public static class GraphSplitter
{
    public static IReadOnlyList<SplitStage> Split(ModelProto model, IReadOnlyList<BlockRange> ranges) =>
        Split(model, new GraphAnalysis(model), ranges);

    public static IReadOnlyList<SplitStage> Split(ModelProto model, GraphAnalysis analysis, IReadOnlyList<BlockRange> ranges)
    {
        try
        {
            BlockRange.ParseContiguousList(string.Join(',', ranges.Select(r => $"{r.Start}:{r.End}")), analysis.BlockCount);
        }
        catch (MeshException e) when (analysis.Fusions.Count > 0)
        {
            throw new MeshException(e.Code, $"{e.Message}; {analysis.Fusions[0]}", e);
        }
        var source = analysis.Model;
        var stages = new List<SplitStage>
        {
            Build(source, analysis, StageKind.Head, null, "head.onnx", null, 0),
        };
        foreach (var range in ranges)
            stages.Add(Build(source, analysis, StageKind.Blocks, range, $"blocks_{range.Start}_{range.End}.onnx", range.Start, range.End));
        stages.Add(Build(source, analysis, StageKind.Tail, null, "tail.onnx", analysis.BlockCount, null));
        return stages;
    }

    /// <summary>Describes the unsplit model as a single stage: token ids in, logits out, every KV pair bound.</summary>
    public static StageDescriptor DescribeWhole(ModelProto model, string file) => DescribeWhole(new GraphAnalysis(model), file);

    public static StageDescriptor DescribeWhole(GraphAnalysis analysis, string file)
    {
        var graph = analysis.Model.Graph;
        var inputs = graph.Input.Where(i => !analysis.Index.IsInitializer(i.Name)).Select(i => i.Name).ToList();
        var outputs = graph.Output.Select(o => o.Name).ToList();
        var state = BindState(analysis, inputs, outputs, file);
        var context = inputs.Where(i => i != analysis.TokenInput && state.All(s => s.Past != i)).ToList();
        return new StageDescriptor(StageKind.Whole, new BlockRange(0, analysis.BlockCount), file, "", analysis.TokenInput, analysis.FinalOutput,
            inputs.Select(i => Info(analysis.ValueInfoFor(i))).ToList(), outputs.Select(o => Info(analysis.ValueInfoFor(o))).ToList(), context, state);
    }

    private static SplitStage Build(ModelProto source, GraphAnalysis analysis, StageKind kind, BlockRange? range, string file, int? from, int? to)
    {
        var extracted = analysis.Extract(from, to);
        var graph = new GraphProto { Name = $"{source.Graph.Name}:{kind}{range}" };
        graph.Node.AddRange(extracted.Nodes.Select(n => n.Clone()));
        var referenced = extracted.Nodes.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        graph.Initializer.AddRange(source.Graph.Initializer.Where(t => referenced.Contains(t.Name)).Select(t => t.Clone()));
        graph.Initializer.AddRange(extracted.Initializers.Select(t => t.Clone()));
        graph.Input.AddRange(extracted.Inputs.Select(i => analysis.ValueInfoFor(i).Clone()));
        graph.Output.AddRange(extracted.Outputs.Select(o => analysis.ValueInfoFor(o).Clone()));

        var model = new ModelProto { IrVersion = source.IrVersion, ProducerName = source.ProducerName, ProducerVersion = source.ProducerVersion, Graph = graph };
        model.OpsetImport.AddRange(source.OpsetImport.Select(o => o.Clone()));
        // What the source says of its graph (LlamaOnnxBuilder's past padding) holds for each part of it.
        model.MetadataProps.AddRange(source.MetadataProps.Select(p => p.Clone()));

        var state = BindState(analysis, extracted.Inputs, extracted.Outputs, file);
        var context = extracted.Inputs.Where(i => i != extracted.ActivationInput && state.All(s => s.Past != i)).ToList();
        var descriptor = new StageDescriptor(kind, range, file, "", extracted.ActivationInput, extracted.ActivationOutput,
            graph.Input.Select(Info).ToList(), graph.Output.Select(Info).ToList(), context, state);
        return new SplitStage(descriptor, model);
    }

    /// <summary>The KV pairs of a stage, from the analysis's data-flow binding; a past read without its present is refused.</summary>
    private static List<StateBinding> BindState(GraphAnalysis analysis, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs, string file)
    {
        var bindings = outputs.Where(analysis.PastOf.ContainsKey).Select(o => new StateBinding(analysis.PastOf[o], o)).ToList();
        foreach (var binding in bindings)
            if (!inputs.Contains(binding.Past))
                throw GraphAnalysis.Refuse($"stage {file} computes '{binding.Present}' but does not read its past '{binding.Past}'");
        foreach (var input in inputs)
            if (analysis.PastOf.Values.Contains(input) && bindings.All(b => b.Past != input))
                throw GraphAnalysis.Refuse($"stage {file} reads the past input '{input}' but does not compute its present");
        return bindings;
    }

    private static TensorInfo Info(ValueInfoProto value)
    {
        var tensorType = value.Type.TensorType;
        var shape = tensorType.Shape?.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue.ToString() : d.DimParam).ToList() ?? [];
        return new TensorInfo(value.Name, (DType)tensorType.ElemType, shape);
    }
}
