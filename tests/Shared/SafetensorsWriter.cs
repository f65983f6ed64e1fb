using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// Writes safetensors files the way Hugging Face's library lays them out (8-byte header length, JSON header with
/// dtype/shape/data_offsets sorted by name, padded with spaces to 8 bytes, then the data), independently of the
/// importer's reader, so tests can build checkpoints in any of F32, F16 and BF16.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>A tensor to write; <see cref="Values"/> is called when its bytes are written, so a large checkpoint is never whole in memory.</summary>
    public sealed record Tensor(string Name, long[] Shape, Func<float[]> Values)
    {
        public Tensor(string name, long[] shape, float[] values) : this(name, shape, () => values) { }

        public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>Writes <paramref name="tensors"/> as one file, each stored as <paramref name="dtype"/> (F32, F16 or BF16; BF16 rounds to nearest even).</summary>
    public static void Write(string path, IEnumerable<Tensor> tensors, string dtype)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var size = dtype == "F32" ? 4 : 2;
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var t in list)
        {
            var bytes = t.Elements * size;
            header[t.Name] = new { dtype, shape = t.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8;
        using var stream = new BufferedStream(File.Create(path), 1 << 20);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        stream.Write(prefix);
        stream.Write(json);
        for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
        var buffer = new byte[1 << 20];
        foreach (var t in list)
        {
            var values = t.Values();
            if (values.LongLength != t.Elements) throw new ArgumentException($"tensor {t.Name} has {values.LongLength} values for shape [{string.Join(", ", t.Shape)}]");
            var used = 0;
            foreach (var value in values)
            {
                var element = buffer.AsSpan(used, size);
                switch (dtype)
                {
                    case "F32": BinaryPrimitives.WriteSingleLittleEndian(element, value); break;
                    case "F16": BinaryPrimitives.WriteHalfLittleEndian(element, (Half)value); break;
                    case "BF16": BinaryPrimitives.WriteUInt16LittleEndian(element, ToBfloat16(value)); break;
                    default: throw new ArgumentException($"unknown dtype {dtype}", nameof(dtype));
                }
                used += size;
                if (used == buffer.Length)
                {
                    stream.Write(buffer);
                    used = 0;
                }
            }
            stream.Write(buffer.AsSpan(0, used));
        }
    }

    /// <summary>Writes the tensors over <paramref name="shards"/> files named as transformers names them, with <c>model.safetensors.index.json</c>.</summary>
    public static void WriteSharded(string directory, IReadOnlyList<Tensor> tensors, string dtype, int shards)
    {
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var perShard = (tensors.Count + shards - 1) / shards;
        for (var s = 0; s < shards; s++)
        {
            var name = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = tensors.Skip(s * perShard).Take(perShard).ToList();
            Write(Path.Combine(directory, name), part, dtype);
            foreach (var t in part) weightMap[t.Name] = name;
        }
        var index = new { metadata = new { total_size = tensors.Sum(t => t.Elements * (dtype == "F32" ? 4 : 2)) }, weight_map = weightMap };
        File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"), JsonSerializer.Serialize(index));
    }

    /// <summary>The value a BF16 store-and-load gives back.</summary>
    public static float RoundToBfloat16(float value) => BitConverter.Int32BitsToSingle(ToBfloat16(value) << 16);

    private static ushort ToBfloat16(float value)
    {
        var bits = (uint)BitConverter.SingleToInt32Bits(value);
        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}
