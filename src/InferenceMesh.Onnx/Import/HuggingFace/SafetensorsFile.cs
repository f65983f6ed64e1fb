using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text.Json;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import.HuggingFace;

/// <summary>
/// A <c>.safetensors</c> file (an 8-byte little-endian header length, a JSON header naming each tensor's dtype, shape
/// and byte range, then the data), memory-mapped: a read maps just the rows asked for and unmaps them after, so a
/// checkpoint larger than memory is read a tensor at a time. F32, F16 and BF16 are read as float32.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>Largest header accepted (the format's reference implementation uses the same 100 MB bound).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly MemoryMappedFile _map;
    private readonly long _dataStart;

    private SafetensorsFile(string path, MemoryMappedFile map, long dataStart, IReadOnlyDictionary<string, SafetensorsTensor> tensors)
    {
        Path = path;
        _map = map;
        _dataStart = dataStart;
        Tensors = tensors;
    }

    public string Path { get; }

    public IReadOnlyDictionary<string, SafetensorsTensor> Tensors { get; }

    /// <summary>Opens and checks the header: every tensor's dtype is known and its byte range fits its shape and the file.</summary>
    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path))
            throw Invalid(path, "does not exist");
        var length = new FileInfo(path).Length;
        if (length < 8) throw Invalid(path, $"is truncated: {length} bytes is shorter than the 8-byte header length");
        byte[] header;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > MaxHeaderBytes || (long)headerLength > length - 8)
                throw Invalid(path, $"is truncated or corrupt: its header claims {headerLength} bytes, the file has {length - 8} after the length");
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        var dataLength = length - 8 - header.Length;
        var tensors = ParseHeader(path, header, dataLength);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        return new SafetensorsFile(path, map, 8 + header.Length, tensors);
    }

    /// <summary>Reads <paramref name="count"/> elements of <paramref name="tensor"/> from element <paramref name="start"/> as float32.</summary>
    public unsafe void ReadFloats(SafetensorsTensor tensor, long start, int count, Span<float> destination)
    {
        var size = ElementSize(tensor.DType);
        if (start < 0 || start + count > tensor.Elements)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements [{start}, {start + count}) are outside '{tensor.Name}' ({tensor.Elements})");
        if (count == 0) return;
        using var view = _map.CreateViewAccessor(_dataStart + tensor.Begin + start * size, (long)count * size, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        try
        {
            var source = new ReadOnlySpan<byte>(pointer + view.PointerOffset, count * size);
            Convert(tensor.DType, source, destination[..count]);
        }
        finally
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
        }
    }

    public void Dispose() => _map.Dispose();

    private static void Convert(string dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; this reader runs on little-endian machines only");
        switch (dtype)
        {
            case "F32":
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case "F16":
                var halves = MemoryMarshal.Cast<byte, Half>(source);
                for (var i = 0; i < destination.Length; i++) destination[i] = (float)halves[i];
                break;
            case "BF16":
                var bits = MemoryMarshal.Cast<byte, ushort>(source);
                var widened = MemoryMarshal.Cast<float, uint>(destination);
                for (var i = 0; i < widened.Length; i++) widened[i] = (uint)bits[i] << 16;
                break;
            default:
                throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"dtype {dtype} cannot be read as float");
        }
    }

    /// <summary>Bytes per element of a dtype this reader converts; anything else is refused by name.</summary>
    public static int ElementSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => throw new MeshException(MeshErrorCode.InvalidCheckpoint, $"safetensors dtype {dtype} is not supported; supported: F32, F16, BF16"),
    };

    private static Dictionary<string, SafetensorsTensor> ParseHeader(string path, byte[] header, long dataLength)
    {
        var tensors = new Dictionary<string, SafetensorsTensor>(StringComparer.Ordinal);
        try
        {
            using var document = JsonDocument.Parse(header);
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw Invalid(path, "has a header that is not a JSON object");
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__") continue;
                var value = entry.Value;
                var dtype = value.GetProperty("dtype").GetString() ?? "";
                var shape = value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                var offsets = value.GetProperty("data_offsets").EnumerateArray().Select(d => d.GetInt64()).ToArray();
                if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataLength)
                    throw Invalid(path, $"is truncated or corrupt: tensor '{entry.Name}' spans bytes [{string.Join(", ", offsets)}) of a {dataLength}-byte data section");
                if (shape.Any(d => d < 0)) throw Invalid(path, $"gives tensor '{entry.Name}' a negative dimension");
                var tensor = new SafetensorsTensor(entry.Name, dtype, shape, offsets[0], offsets[1]);
                var expected = tensor.Elements * ElementSize(dtype);
                if (expected != offsets[1] - offsets[0])
                    throw Invalid(path, $"gives tensor '{entry.Name}' {offsets[1] - offsets[0]} bytes; {dtype} [{string.Join(", ", shape)}] needs {expected}");
                tensors[entry.Name] = tensor;
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            throw Invalid(path, $"has an unreadable header: {e.Message}");
        }
        return tensors;
    }

    private static MeshException Invalid(string path, string problem) => new(MeshErrorCode.InvalidCheckpoint, $"safetensors file {path} {problem}");
}
