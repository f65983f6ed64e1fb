using System.Buffers;
using System.Runtime.InteropServices;

namespace InferenceMesh.Core;

/// <summary>
/// A dense tensor as the mesh carries it: dtype, shape and little-endian bytes in row-major order.
/// It owns no native memory. A tensor built over an array may share it, so treat the bytes as immutable once built.
/// A pooled tensor (<see cref="CopyToPooled(DType, long[], ReadOnlySpan{byte})"/>) rents its buffer from
/// <see cref="ArrayPool{T}.Shared"/> and returns it on <see cref="Dispose"/>; only its last user disposes it, and
/// its bytes may not be read afterwards. Disposing a tensor built over an array does nothing.
/// </summary>
public sealed class TensorData : IDisposable
{
    private static long _rents;
    private static long _returns;
    private readonly ReadOnlyMemory<byte> _bytes;
    private byte[]? _rented;
    private bool _returned;

    /// <summary>Buffers pooled tensors have rented, process-wide, since the process started (with <see cref="PoolReturns"/>: a leak check).</summary>
    public static long PoolRents => Interlocked.Read(ref _rents);

    /// <summary>Buffers pooled tensors have given back by <see cref="Dispose"/>, process-wide; a buffer left to the collector is never counted.</summary>
    public static long PoolReturns => Interlocked.Read(ref _returns);

    public TensorData(DType type, long[] shape, byte[] bytes)
        : this(type, shape, bytes, rented: null)
    {
    }

    private TensorData(DType type, long[] shape, ReadOnlyMemory<byte> bytes, byte[]? rented)
    {
        var count = ElementCount(shape);
        if (count * type.ByteSize() != bytes.Length)
            throw new MeshException(MeshErrorCode.ShapeMismatch,
                $"tensor of shape [{string.Join(',', shape)}] {type} needs {count * type.ByteSize()} bytes, got {bytes.Length}");
        Type = type;
        Shape = shape;
        _bytes = bytes;
        _rented = rented;
    }

    public DType Type { get; }
    public long[] Shape { get; }

    /// <summary>The tensor's bytes; throws <see cref="ObjectDisposedException"/> once a pooled tensor was disposed.</summary>
    public ReadOnlyMemory<byte> Bytes => _returned ? throw new ObjectDisposedException(nameof(TensorData), "a pooled tensor's buffer went back to the pool") : _bytes;

    /// <summary>Whether the bytes live in a buffer rented from the shared pool.</summary>
    public bool IsPooled => _rented is not null || _returned;

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

    /// <summary>A pooled tensor holding a copy of <paramref name="bytes"/> (the one copy; no array of the payload's size is allocated once the pool is warm).</summary>
    public static TensorData CopyToPooled(DType type, long[] shape, ReadOnlySpan<byte> bytes)
    {
        var rented = Rent(type, shape, bytes.Length);
        bytes.CopyTo(rented);
        return new TensorData(type, shape, rented.AsMemory(0, bytes.Length), rented);
    }

    /// <summary>A pooled tensor holding a copy of <paramref name="bytes"/>, read straight from a pipe's segments.</summary>
    public static TensorData CopyToPooled(DType type, long[] shape, in ReadOnlySequence<byte> bytes)
    {
        var length = checked((int)bytes.Length);
        var rented = Rent(type, shape, length);
        bytes.CopyTo(rented);
        return new TensorData(type, shape, rented.AsMemory(0, length), rented);
    }

    public ReadOnlySpan<float> AsFloats() => Type == DType.Float32
        ? MemoryMarshal.Cast<byte, float>(Bytes.Span)
        : throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not Float32");

    /// <summary>Returns a pooled tensor's buffer to the pool; later reads of <see cref="Bytes"/> throw. Idempotent.</summary>
    public void Dispose()
    {
        var rented = Interlocked.Exchange(ref _rented, null);
        if (rented is null) return;
        _returned = true;
        ArrayPool<byte>.Shared.Return(rented);
        Interlocked.Increment(ref _returns);
    }

    /// <summary>The values as float32, converting float16 (fp16 exports give fp16 logits and activations); a fresh array.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.ShapeMismatch"/> for an integer tensor.</exception>
    public float[] ToFloatArray() => Type switch
    {
        DType.Float32 => MemoryMarshal.Cast<byte, float>(Bytes.Span).ToArray(),
        DType.Float16 => HalvesToFloats(MemoryMarshal.Cast<byte, Half>(Bytes.Span)),
        _ => throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not a float type"),
    };

    /// <summary>The last row (last axis) as float32: the last position's logits of a step.</summary>
    public float[] LastRowAsFloats()
    {
        var width = (int)Shape[^1];
        var row = Type == DType.Float16 ? HalvesToFloats(MemoryMarshal.Cast<byte, Half>(Bytes.Span)[^width..]) : null;
        return row ?? (Type == DType.Float32 ? MemoryMarshal.Cast<byte, float>(Bytes.Span)[^width..].ToArray()
            : throw new MeshException(MeshErrorCode.ShapeMismatch, $"tensor is {Type}, not a float type"));
    }

    private static float[] HalvesToFloats(ReadOnlySpan<Half> halves)
    {
        var floats = new float[halves.Length];
        for (var i = 0; i < floats.Length; i++) floats[i] = (float)halves[i];
        return floats;
    }

    public override string ToString() => $"{Type}[{string.Join(',', Shape)}]";

    /// <summary>Checks the length against the shape before renting, so a bad frame cannot rent a buffer it will not fill.</summary>
    private static byte[] Rent(DType type, long[] shape, int length)
    {
        if (ElementCount(shape) * type.ByteSize() != length)
            throw new MeshException(MeshErrorCode.ShapeMismatch,
                $"tensor of shape [{string.Join(',', shape)}] {type} needs {ElementCount(shape) * type.ByteSize()} bytes, got {length}");
        var rented = ArrayPool<byte>.Shared.Rent(length);
        Interlocked.Increment(ref _rents);
        return rented;
    }
}
