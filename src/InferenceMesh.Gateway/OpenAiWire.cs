using System.Text.Json;
using System.Text.Json.Serialization;

namespace InferenceMesh.Gateway;

/// <summary>The request bodies of OpenAI's API that the gateway reads (fields it does not use are ignored, as OpenAI's SDKs send extras).</summary>
internal static class OpenAiWire
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public sealed record CompletionRequest(string? Model, JsonElement? Prompt, int? MaxTokens, float? Temperature, float? TopP, long? Seed, JsonElement? Stop, int? N, bool? Stream);

    public sealed record ChatRequest(string? Model, IReadOnlyList<ChatMessage>? Messages, int? MaxTokens, int? MaxCompletionTokens, float? Temperature, float? TopP, long? Seed,
        JsonElement? Stop, int? N, bool? Stream, StreamOptions? StreamOptions);

    public sealed record ChatMessage(string? Role, JsonElement? Content);

    public sealed record StreamOptions(bool? IncludeUsage);
}
