using System.Runtime.InteropServices;
using Google.Protobuf;
using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>Builds an ONNX graph node by node, naming every produced tensor uniquely.</summary>
public sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph;
    private readonly Dictionary<string, int> _nameCounts = new();

    /// <summary>ONNX Runtime's contrib operators (<c>MatMulNBits</c>, …), imported at version 1.</summary>
    public const string MicrosoftDomain = "com.microsoft";

    public OnnxGraphBuilder(string name) => _graph = new GraphProto { Name = name };

    public GraphProto Graph => _graph;

    public string UniqueName(string stem)
    {
        var count = _nameCounts.GetValueOrDefault(stem);
        _nameCounts[stem] = count + 1;
        return count == 0 ? stem : $"{stem}_{count}";
    }

    public void Input(string name, DType type, params string[] shape) => _graph.Input.Add(ValueInfo(name, type, shape));

    public void Output(string name, DType type, params string[] shape) => _graph.Output.Add(ValueInfo(name, type, shape));

    /// <summary>Records the type and shape of an intermediate tensor (ONNX <c>value_info</c>).</summary>
    public void Annotate(string name, DType type, params string[] shape) => _graph.ValueInfo.Add(ValueInfo(name, type, shape));

    /// <summary>Adds a node with one output named after <paramref name="outputStem"/>, and returns that output's name.</summary>
    public string Node(string opType, string outputStem, string[] inputs, params AttributeProto[] attributes) =>
        NodeMulti(opType, [outputStem], inputs, attributes)[0];

    public string[] NodeMulti(string opType, string[] outputStems, string[] inputs, params AttributeProto[] attributes) =>
        NodeInDomain("", opType, outputStems, inputs, attributes);

    /// <summary>
    /// Adds a node of an operator set other than the default one (e.g. <see cref="MicrosoftDomain"/>'s contrib operators);
    /// <see cref="ToModel"/> imports every domain a node uses.
    /// </summary>
    public string[] NodeInDomain(string domain, string opType, string[] outputStems, string[] inputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Domain = domain, Name = UniqueName(opType + "_" + outputStems[0]) };
        node.Input.AddRange(inputs);
        var outputs = outputStems.Select(UniqueName).ToArray();
        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Adds a node whose single output has exactly <paramref name="outputName"/> (a graph output).</summary>
    public void NodeNamed(string opType, string outputName, string[] inputs, params AttributeProto[] attributes) =>
        NodeNamedInDomain("", opType, outputName, inputs, attributes);

    /// <summary>Adds a node of operator set <paramref name="domain"/> whose single output has exactly <paramref name="outputName"/>.</summary>
    public void NodeNamedInDomain(string domain, string opType, string outputName, string[] inputs, params AttributeProto[] attributes)
    {
        var node = new NodeProto { OpType = opType, Domain = domain, Name = UniqueName(opType + "_" + outputName) };
        node.Input.AddRange(inputs);
        node.Output.Add(outputName);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
    }

    public string Floats(string stem, ReadOnlySpan<float> values, params long[] dims) => Initializer(stem, DType.Float32, MemoryMarshal.AsBytes(values), dims);

    public string Int64s(string stem, ReadOnlySpan<long> values, params long[] dims) => Initializer(stem, DType.Int64, MemoryMarshal.AsBytes(values), dims);

    public string ScalarFloat(string stem, float value) => Floats(stem, [value]);

    public string ScalarInt64(string stem, long value) => Int64s(stem, [value]);

    public string Initializer(string stem, DType type, ReadOnlySpan<byte> raw, params long[] dims)
    {
        var tensor = new TensorProto { Name = UniqueName(stem), DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        tensor.Dims.AddRange(dims);
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    public static AttributeProto Attr(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto AttrInts(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    public static AttributeProto AttrTensor(string name, TensorProto value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value };

    public static ValueInfoProto ValueInfo(string name, DType type, IEnumerable<string> shape)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = new TensorShapeProto() };
        foreach (var d in shape)
        {
            tensorType.Shape.Dim.Add(long.TryParse(d, out var value)
                ? new TensorShapeProto.Types.Dimension { DimValue = value }
                : new TensorShapeProto.Types.Dimension { DimParam = d });
        }
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }

    /// <summary>
    /// Wraps the graph in a model that imports the default ONNX domain at <paramref name="opset"/>, and
    /// <see cref="MicrosoftDomain"/> at version 1 when a node uses it.
    /// </summary>
    public ModelProto ToModel(long opset, string producer)
    {
        var model = new ModelProto { IrVersion = 8, ProducerName = producer, ProducerVersion = "1", Graph = _graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        foreach (var domain in _graph.Node.Select(n => n.Domain).Where(d => d is not ("" or "ai.onnx")).Distinct(StringComparer.Ordinal))
        {
            if (domain != MicrosoftDomain)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"operator set '{domain}' has no known version to import");
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = 1 });
        }
        return model;
    }
}
