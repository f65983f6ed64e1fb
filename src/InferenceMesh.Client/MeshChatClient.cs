using System.Runtime.CompilerServices;
using System.Threading.Channels;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;
using Microsoft.Extensions.AI;

namespace InferenceMesh.Client;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="MeshClient"/>, so an app written against Microsoft.Extensions.AI uses
/// the mesh in-process. The messages are rendered with the model's chat template (tokenizer_config.json, or the family
/// <see cref="MeshClientOptions.ChatTemplate"/> names, see <see cref="ChatTemplate"/>); a model without one (stories260K,
/// a completion model) continues the messages' text joined with line breaks. Maps <see cref="ChatOptions.MaxOutputTokens"/>,
/// <see cref="ChatOptions.Temperature"/>, <see cref="ChatOptions.TopP"/>, <see cref="ChatOptions.Seed"/> and
/// <see cref="ChatOptions.StopSequences"/>. A response, and the last streamed update, carry the <see cref="GenerationResult"/>
/// (route, per-hop latency, recoveries) as their <c>RawRepresentation</c>. Calls are safe to cancel: the mesh session closes on every server.
/// </summary>
/// <param name="ownsClient">Whether <see cref="Dispose"/> disposes <paramref name="client"/>.</param>
public sealed class MeshChatClient(MeshClient client, bool ownsClient = false) : IChatClient
{
    /// <summary>New tokens when <see cref="ChatOptions.MaxOutputTokens"/> is not set.</summary>
    public const int DefaultMaxOutputTokens = 256;

    private readonly ChatClientMetadata _metadata = new("inferencemesh", null, client.Manifest.ModelId);

    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var result = await client.CompleteChatAsync(Turns(messages), Generation(options), null, cancellationToken, Stops(options)).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, result.Completion))
        {
            ModelId = client.Manifest.ModelId,
            FinishReason = Reason(result.FinishReason),
            Usage = Usage(result),
            RawRepresentation = result,
        };
    }

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var turns = Turns(messages);
        var generation = Generation(options);
        var stops = Stops(options);
        // One piece per token at most, so the model's context bounds the queue.
        var pieces = Channel.CreateBounded<string>(new BoundedChannelOptions(client.Manifest.Config!.MaxSequence + 1) { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var run = Task.Run(async () =>
        {
            try
            {
                return await client.CompleteChatAsync(turns, generation, piece => pieces.Writer.TryWrite(piece), stop.Token, stops).ConfigureAwait(false);
            }
            finally
            {
                pieces.Writer.TryComplete();
            }
        }, CancellationToken.None);
        try
        {
            await foreach (var piece in pieces.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                if (piece.Length > 0)
                    yield return new ChatResponseUpdate(ChatRole.Assistant, piece) { ModelId = client.Manifest.ModelId };
            var result = await run.ConfigureAwait(false);
            yield return new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(result))])
            {
                ModelId = client.Manifest.ModelId,
                FinishReason = Reason(result.FinishReason),
                RawRepresentation = result,
            };
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await run.ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }
    }

    public object? GetService(Type serviceType, object? serviceKey = null) =>
        serviceKey is not null ? null
        : serviceType == typeof(ChatClientMetadata) ? _metadata
        : serviceType.IsInstanceOfType(this) ? this
        : serviceType.IsInstanceOfType(client) ? client
        : null;

    public void Dispose()
    {
        if (ownsClient) client.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    /// <summary>The messages as chat turns; roles other than system, user and assistant are refused when a template renders them.</summary>
    private static List<ChatTurn> Turns(IEnumerable<ChatMessage> messages) => [.. messages.Select(m => new ChatTurn(m.Role.Value, m.Text))];

    private GenerationOptions Generation(ChatOptions? options)
    {
        if (options?.ModelId is { } model && model != client.Manifest.ModelId)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"this client serves model {client.Manifest.ModelId}, not {model}");
        return new GenerationOptions(
            options?.MaxOutputTokens ?? DefaultMaxOutputTokens,
            options?.Temperature ?? 0f,
            options?.TopP ?? 0.9f,
            options?.Seed is { } seed ? unchecked((ulong)seed) : 42);
    }

    private static IReadOnlyList<string> Stops(ChatOptions? options) => options?.StopSequences is { } stops ? [.. stops] : [];

    private static ChatFinishReason Reason(FinishReason reason) => reason == FinishReason.Stop ? ChatFinishReason.Stop : ChatFinishReason.Length;

    private static UsageDetails Usage(GenerationResult result) => new()
    {
        InputTokenCount = result.PromptTokens,
        OutputTokenCount = result.GeneratedTokens,
        TotalTokenCount = result.PromptTokens + result.GeneratedTokens,
    };
}
