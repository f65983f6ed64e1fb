using Google.Protobuf;
using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>Reads and writes ONNX model files, refusing anything that is not a usable ONNX model with a clear message.</summary>
public static class OnnxModelFile
{
    /// <summary>Largest model file read into memory (protobuf's own limit is 2 GiB).</summary>
    public const long MaxBytes = int.MaxValue;

    public static ModelProto Load(string path)
    {
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"ONNX file {path} does not exist");
        var length = new FileInfo(path).Length;
        if (length > MaxBytes)
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"{path} is {length} bytes; a graph file must stay under protobuf's 2 GiB: keep the weights in external data");
        return Parse(File.ReadAllBytes(path), path);
    }

    public static ModelProto Parse(byte[] bytes, string source)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"{source} is not an ONNX model: {e.Message}", e);
        }
        if (model.Graph is null || model.Graph.Node.Count == 0 || model.OpsetImport.Count == 0 || model.Graph.Output.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"{source} is not an ONNX model: it has no graph, nodes, outputs or opset import");
        return model;
    }

    public static void Save(ModelProto model, string path)
    {
        using var stream = File.Create(path);
        model.WriteTo(stream);
    }
}
