using InferenceMesh.Core;
using Onnx;

namespace InferenceMesh.Onnx;

/// <summary>
/// Appends initializer bytes to an ONNX external-data file (the weights kept outside the protobuf, whose messages
/// cannot exceed 2 GiB) and makes the <see cref="TensorProto"/> that points at them. Each tensor starts on a
/// 4 KiB boundary so ONNX Runtime can map it from the file.
/// </summary>
public sealed class ExternalDataWriter : IDisposable
{
    /// <summary>Tensor starts are multiples of this many bytes.</summary>
    public const int Alignment = 4096;

    private readonly FileStream _stream;

    /// <param name="path">The data file to create.</param>
    /// <param name="location">The file's name as the model records it, relative to the model file's directory.</param>
    public ExternalDataWriter(string path, string location)
    {
        _stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Location = location;
    }

    public string Location { get; }

    /// <summary>Starts a tensor at the next aligned offset; its bytes are then written with <see cref="Write"/> and it is finished by <see cref="EndTensor"/>.</summary>
    public long BeginTensor()
    {
        var padding = (int)((Alignment - _stream.Position % Alignment) % Alignment);
        if (padding > 0) _stream.Write(new byte[padding]);
        return _stream.Position;
    }

    public void Write(ReadOnlySpan<byte> bytes) => _stream.Write(bytes);

    /// <summary>The initializer for the bytes written since <paramref name="offset"/> (from <see cref="BeginTensor"/>).</summary>
    public TensorProto EndTensor(string name, DType type, long offset, params long[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, DataLocation = TensorProto.Types.DataLocation.External };
        tensor.Dims.AddRange(dims);
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = Location });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString() });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = (_stream.Position - offset).ToString() });
        return tensor;
    }

    public void Dispose() => _stream.Dispose();
}
