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

    /// <summary>The values as float32, converting float16 (fp16 exports give fp16 logits and activations); a fresh array.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.ShapeMismatch"/> for an integer tensor.</exception>
    public float[] ToFloatArray() => Type switch
    {
        DType.Float32 => MemoryMarshal.Cast<byte, float>(Bytes).ToArray(),
        DType.Float16 => HalvesToFloats(MemoryMarshal.Cast<byte, Half>(Bytes)),
        _ => throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not a float type"),
    };

    /// <summary>The last row (last axis) as float32: the last position's logits of a step.</summary>
    public float[] LastRowAsFloats()
    {
        var width = (int)Shape[^1];
        var row = Type == DType.Float16 ? HalvesToFloats(MemoryMarshal.Cast<byte, Half>(Bytes)[^width..]) : null;
        return row ?? (Type == DType.Float32 ? MemoryMarshal.Cast<byte, float>(Bytes)[^width..].ToArray()
            : throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not a float type"));
    }

    private static float[] HalvesToFloats(ReadOnlySpan<Half> halves)
    {
        var floats = new float[halves.Length];
        for (var i = 0; i < floats.Length; i++) floats[i] = (float)halves[i];
        return floats;
    }

    public override string ToString() => $"{Type}[{string.Join(',', Shape)}]";
}
