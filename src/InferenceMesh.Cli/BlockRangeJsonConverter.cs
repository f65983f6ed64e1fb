using System.Text.Json;
using System.Text.Json.Serialization;
using InferenceMesh.Core;

namespace InferenceMesh.Cli;

/// <summary>Writes and reads a <see cref="BlockRange"/> as its <c>start:end</c> text, as tables and options write it.</summary>
public sealed class BlockRangeJsonConverter : JsonConverter<BlockRange>
{
    public override BlockRange Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        BlockRange.Parse(reader.GetString() ?? throw new JsonException("a block range must be a string like 0:2"));

    public override void Write(Utf8JsonWriter writer, BlockRange value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
}
