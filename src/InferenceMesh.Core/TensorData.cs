using System.Runtime.InteropServices;

namespace InferenceMesh.Core;

/// <summary>
/// A dense tensor as the mesh carries it: dtype, shape and little-endian bytes in row-major order.
/// It owns no native memory; the byte array may be shared, so treat it as immutable once built.
/// </summary>
public sealed class TensorData
{
    public TensorData(DType type, long[] shape, byte[] bytes)
    {
        var count = ElementCount(shape);
        if (count * type.ByteSize() != bytes.Length)
            throw new MeshException(MeshErrorCode.ShapeMismatch,
                $"tensor of shape [{string.Join(',', shape)}] {type} needs {count * type.ByteSize()} bytes, got {bytes.Length}");
        Type = type;
        Shape = shape;
        Bytes = bytes;
    }

    public DType Type { get; }
    public long[] Shape { get; }
    public byte[] Bytes { get; }
    public long ElementCount() => ElementCount(Shape);

    public static long ElementCount(ReadOnlySpan<long> shape)
    {
        long count = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new MeshException(MeshErrorCode.ShapeMismatch, $"negative dimension {d}");
            count = checked(count * d);
        }
        return count;
    }

    public static TensorData FromFloats(long[] shape, ReadOnlySpan<float> values) =>
        new(DType.Float32, shape, MemoryMarshal.AsBytes(values).ToArray());

    public static TensorData FromInt64s(long[] shape, ReadOnlySpan<long> values) =>
        new(DType.Int64, shape, MemoryMarshal.AsBytes(values).ToArray());

    public ReadOnlySpan<float> AsFloats() => Type == DType.Float32
        ? MemoryMarshal.Cast<byte, float>(Bytes)
        : throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not Float32");

    public override string ToString() => $"{Type}[{string.Join(',', Shape)}]";
}
