using System.Text.Json;
using System.Text.Json.Serialization;

namespace InferenceMesh.Cli;

/// <summary>The one JSON style of the CLI's output: camelCase names, enums as camelCase strings, blocks as <c>start:end</c>.</summary>
public static class CliJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase), new BlockRangeJsonConverter() },
    };
}
