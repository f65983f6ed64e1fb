using System.Net;
using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace InferenceMesh.Gateway;

/// <summary>
/// An OpenAI-compatible HTTP API over a <see cref="MeshClient"/> (Kestrel, minimal APIs): <c>GET /v1/models</c>,
/// <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c>, streamed as server-sent events or not. Errors
/// come in OpenAI's error object: 400 for a bad request (unknown model, bad parameter, prompt over the context),
/// 429 when sessions and queue are full, 503 when the mesh cannot serve, 504 on a timeout. A client that
/// disconnects cancels its generation, and its mesh session closes on every server. <c>GET /</c> is the swarm's health
/// page (which peers serve which blocks, refreshed every 2 s from <c>GET /api/swarm</c>, the same data as JSON), and
/// <c>GET /metrics</c> the gateway's Prometheus metrics.
/// </summary>
public sealed class MeshGateway : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly MeshClient _client;
    private readonly MeshChatClient _chat;
    private readonly GatewayOptions _options;
    private readonly SemaphoreSlim _sessions;
    private readonly GatewayMetrics _metrics;
    private readonly SwarmSurvey _survey;
    private int _queued;

    private MeshGateway(WebApplication app, MeshClient client, GatewayOptions options)
    {
        _app = app;
        _client = client;
        _chat = new MeshChatClient(client);
        _options = options;
        _sessions = new SemaphoreSlim(options.MaxConcurrentSessions, options.MaxConcurrentSessions);
        _metrics = new GatewayMetrics(client);
        _survey = new SwarmSurvey(client, options);
    }

    /// <summary>The gateway's Prometheus metrics, also served at <c>/metrics</c>.</summary>
    public GatewayMetrics Metrics => _metrics;

    /// <summary>The URLs the gateway listens on, with the ports it was given.</summary>
    public IReadOnlyList<string> Urls => [.. _app.Urls];

    /// <summary>Starts listening. The caller keeps ownership of <paramref name="client"/>. Safe to cancel.</summary>
    public static async Task<MeshGateway> StartAsync(MeshClient client, GatewayOptions options, CancellationToken cancellation = default)
    {
        if (options.MaxConcurrentSessions < 1 || options.MaxQueuedRequests < 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "the gateway needs at least one session slot and a queue of zero or more");
        if (options.SwarmSnapshotLifetime < TimeSpan.Zero)
            throw new MeshException(MeshErrorCode.InvalidArgument, "the swarm snapshot lifetime cannot be negative");
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls([.. options.Urls]);
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes);
        var app = builder.Build();
        var gateway = new MeshGateway(app, client, options);
        app.MapGet("/v1/models", gateway.ListModels);
        app.MapPost("/v1/completions", context => gateway.HandleAsync(context, chat: false));
        app.MapPost("/v1/chat/completions", context => gateway.HandleAsync(context, chat: true));
        app.MapMetrics("/metrics", gateway._metrics.Registry);
        app.MapGet("/", gateway.HealthPage);
        app.MapGet("/api/swarm", gateway.SwarmAsync);
        try
        {
            await app.StartAsync(cancellation).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return gateway;
    }

    private IResult ListModels() => Results.Json(new
    {
        @object = "list",
        data = new[] { new { id = _options.ModelName, @object = "model", created = 0, owned_by = "inferencemesh", root = _client.Manifest.ModelId } },
    }, OpenAiWire.Json);

    private IResult HealthPage(HttpContext context)
    {
        context.Response.Headers.CacheControl = "no-cache";
        return Results.Text(SwarmSurvey.Page, "text/html; charset=utf-8");
    }

    private async Task SwarmAsync(HttpContext context)
    {
        try
        {
            var snapshot = await _survey.SnapshotAsync(context.RequestAborted).ConfigureAwait(false);
            context.Response.Headers.CacheControl = "no-store";
            await Results.Json(_survey.Body(snapshot), OpenAiWire.Json).ExecuteAsync(context).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e) when (Refusal(e) is { } refusal)
        {
            await WriteErrorAsync(context, refusal).ConfigureAwait(false);
        }
    }

    private async Task HandleAsync(HttpContext context, bool chat)
    {
        Admission? admission = null;
        try
        {
            var request = await ReadAsync(context, chat).ConfigureAwait(false);
            admission = await AdmitAsync(context.RequestAborted).ConfigureAwait(false);
            if (request.Stream) await StreamAsync(context, request, chat).ConfigureAwait(false);
            else await RespondAsync(context, request, chat).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
        }
        catch (Exception e) when (!context.Response.HasStarted && Refusal(e) is { } refusal)
        {
            await WriteErrorAsync(context, refusal).ConfigureAwait(false);
        }
        catch (Exception e) when (context.Response.HasStarted && Refusal(e) is { } refusal)
        {
            // Headers are gone: the error travels as the stream's last event, as OpenAI's streams do.
            await WriteEventAsync(context, new { error = ErrorBody(refusal) }).ConfigureAwait(false);
        }
        finally
        {
            admission?.Dispose();
            _metrics.Answered(chat ? "chat_completions" : "completions", context.Response.StatusCode);
        }
    }

    private async Task RespondAsync(HttpContext context, Request request, bool chat)
    {
        var response = await _chat.GetResponseAsync(request.Messages, request.Options, context.RequestAborted).ConfigureAwait(false);
        if (response.RawRepresentation is GenerationResult result) _metrics.Generated(result);
        var usage = new
        {
            prompt_tokens = response.Usage?.InputTokenCount ?? 0,
            completion_tokens = response.Usage?.OutputTokenCount ?? 0,
            total_tokens = response.Usage?.TotalTokenCount ?? 0,
        };
        var finish = FinishReason(response.FinishReason ?? ChatFinishReason.Stop);
        object body = chat
            ? new { id = request.Id, @object = "chat.completion", created = request.Created, model = request.Model, choices = new[] { new { index = 0, message = new { role = "assistant", content = response.Text }, finish_reason = finish } }, usage }
            : new { id = request.Id, @object = "text_completion", created = request.Created, model = request.Model, choices = new[] { new { text = response.Text, index = 0, logprobs = (object?)null, finish_reason = finish } }, usage };
        await Results.Json(body, OpenAiWire.Json).ExecuteAsync(context).ConfigureAwait(false);
    }

    private async Task StreamAsync(HttpContext context, Request request, bool chat)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        if (chat) await WriteEventAsync(context, ChatChunk(request, new { role = "assistant", content = "" }, null)).ConfigureAwait(false);
        await foreach (var update in _chat.GetStreamingResponseAsync(request.Messages, request.Options, context.RequestAborted).ConfigureAwait(false))
        {
            if (update.RawRepresentation is GenerationResult result) _metrics.Generated(result);
            var finish = update.FinishReason is { } reason ? FinishReason(reason) : null;
            if (update.Text.Length > 0 || finish is not null)
                await WriteEventAsync(context, chat
                    ? ChatChunk(request, finish is null ? new { content = update.Text } : new object(), finish)
                    : new { id = request.Id, @object = "text_completion", created = request.Created, model = request.Model, choices = new[] { new { text = update.Text, index = 0, logprobs = (object?)null, finish_reason = finish } } }).ConfigureAwait(false);
            if (request.IncludeUsage && update.Contents.OfType<UsageContent>().FirstOrDefault() is { } usage)
                await WriteEventAsync(context, new
                {
                    id = request.Id, @object = chat ? "chat.completion.chunk" : "text_completion", created = request.Created, model = request.Model, choices = Array.Empty<object>(),
                    usage = new { prompt_tokens = usage.Details.InputTokenCount ?? 0, completion_tokens = usage.Details.OutputTokenCount ?? 0, total_tokens = usage.Details.TotalTokenCount ?? 0 },
                }).ConfigureAwait(false);
        }
        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
        await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private static object ChatChunk(Request request, object delta, string? finish) =>
        new { id = request.Id, @object = "chat.completion.chunk", created = request.Created, model = request.Model, choices = new[] { new { index = 0, delta, finish_reason = finish } } };

    private static async Task WriteEventAsync(HttpContext context, object payload)
    {
        await context.Response.WriteAsync($"data: {JsonSerializer.Serialize(payload, OpenAiWire.Json)}\n\n", context.RequestAborted).ConfigureAwait(false);
        await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
    }

    private static string FinishReason(ChatFinishReason reason) => reason == ChatFinishReason.Length ? "length" : "stop";

    /// <summary>Takes a session slot, waiting in the bounded queue if none is free. Safe to cancel.</summary>
    private async Task<Admission> AdmitAsync(CancellationToken cancellation)
    {
        if (!_sessions.Wait(0))
        {
            _metrics.RequestsQueued.Inc();
            if (Interlocked.Increment(ref _queued) > _options.MaxQueuedRequests)
            {
                Interlocked.Decrement(ref _queued);
                _metrics.RequestsQueued.Dec();
                throw new GatewayException(HttpStatusCode.TooManyRequests, "rate_limit_exceeded",
                    $"all {_options.MaxConcurrentSessions} sessions are busy and {_options.MaxQueuedRequests} requests are waiting; retry later", code: "rate_limit_exceeded");
            }
            try
            {
                await _sessions.WaitAsync(cancellation).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _queued);
                _metrics.RequestsQueued.Dec();
            }
        }
        _metrics.SessionsOpen.Inc();
        return new Admission(_sessions, _metrics.SessionsOpen);
    }

    private sealed class Admission(SemaphoreSlim sessions, Gauge open) : IDisposable
    {
        public void Dispose()
        {
            open.Dec();
            sessions.Release();
        }
    }

    private async Task<Request> ReadAsync(HttpContext context, bool chat)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw BadRequest($"the body is not JSON: {e.Message}");
        }
        using (document)
        {
            try
            {
                return chat ? ChatRequestFrom(document.RootElement.Deserialize<OpenAiWire.ChatRequest>(OpenAiWire.Json)!)
                    : CompletionRequestFrom(document.RootElement.Deserialize<OpenAiWire.CompletionRequest>(OpenAiWire.Json)!);
            }
            catch (JsonException e)
            {
                throw BadRequest($"the body does not fit the request: {e.Message}", e.Path);
            }
        }
    }

    private Request CompletionRequestFrom(OpenAiWire.CompletionRequest body)
    {
        if (body.Prompt is not { ValueKind: JsonValueKind.String } prompt)
            throw BadRequest("prompt must be one string", "prompt");
        return Validated(body.Model, [new ChatMessage(ChatRole.User, prompt.GetString()!)], body.MaxTokens, body.Temperature, body.TopP, body.Seed, body.Stop, body.N, body.Stream, false, "cmpl");
    }

    private Request ChatRequestFrom(OpenAiWire.ChatRequest body)
    {
        if (body.Messages is not { Count: > 0 } messages)
            throw BadRequest("messages must hold at least one message", "messages");
        var converted = messages.Select((m, i) => new ChatMessage(new ChatRole(m.Role ?? throw BadRequest($"message {i} has no role", "messages")), Text(m.Content, i))).ToList();
        return Validated(body.Model, converted, body.MaxCompletionTokens ?? body.MaxTokens, body.Temperature, body.TopP, body.Seed, body.Stop, body.N, body.Stream,
            body.StreamOptions?.IncludeUsage ?? false, "chatcmpl");
    }

    /// <summary>A message's content: a string, or OpenAI's array of parts of which only text parts are understood.</summary>
    private static string Text(JsonElement? content, int index) => content switch
    {
        { ValueKind: JsonValueKind.String } text => text.GetString()!,
        { ValueKind: JsonValueKind.Array } parts => string.Concat(parts.EnumerateArray().Select(p =>
            p.TryGetProperty("type", out var type) && type.GetString() == "text" && p.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String
                ? text.GetString()
                : throw BadRequest($"message {index} has a content part that is not text", "messages"))),
        _ => throw BadRequest($"message {index} has no text content", "messages"),
    };

    private Request Validated(string? model, List<ChatMessage> messages, int? maxTokens, float? temperature, float? topP, long? seed, JsonElement? stop, int? n, bool? stream, bool includeUsage, string idPrefix)
    {
        if (model is null)
            throw BadRequest("model is required", "model");
        if (model != _options.ModelName && model != _client.Manifest.ModelId)
            throw new GatewayException(HttpStatusCode.NotFound, "invalid_request_error", $"the model '{model}' does not exist; this gateway serves '{_options.ModelName}'", "model", "model_not_found");
        if (n is not null and not 1)
            throw BadRequest($"n must be 1, not {n}", "n");
        if (maxTokens is < 1)
            throw BadRequest($"max_tokens must be at least 1, not {maxTokens}", "max_tokens");
        if (temperature is < 0 or > 2)
            throw BadRequest($"temperature must be between 0 and 2, not {temperature}", "temperature");
        if (topP is <= 0 or > 1)
            throw BadRequest($"top_p must be in (0, 1], not {topP}", "top_p");
        var stops = stop switch
        {
            null or { ValueKind: JsonValueKind.Null } => [],
            { ValueKind: JsonValueKind.String } one => [one.GetString()!],
            { ValueKind: JsonValueKind.Array } many when many.GetArrayLength() <= 4 && many.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String) => many.EnumerateArray().Select(s => s.GetString()!).ToList(),
            _ => throw BadRequest("stop must be a string or up to 4 strings", "stop"),
        };
        var context = _client.Manifest.Config!.MaxSequence;
        var promptTokens = InferenceMesh.Onnx.Tokenizer.ChatPrompt.Encode(_client.Tokenizer, [.. messages.Select(m => new InferenceMesh.Onnx.Tokenizer.ChatTurn(m.Role.Value, m.Text))], _client.Options.ChatTemplate).Tokens.Count;
        if (promptTokens >= context)
            throw BadRequest($"the prompt is {promptTokens} tokens; the model's context is {context}, so nothing can follow it", idPrefix == "chatcmpl" ? "messages" : "prompt", "context_length_exceeded");
        var options = new ChatOptions
        {
            MaxOutputTokens = maxTokens ?? MeshChatClient.DefaultMaxOutputTokens,
            Temperature = temperature ?? 1f,
            TopP = topP ?? 1f,
            Seed = seed,
            StopSequences = stops,
        };
        return new Request($"{idPrefix}-{Guid.NewGuid():N}", DateTimeOffset.UtcNow.ToUnixTimeSeconds(), model, messages, options, stream ?? false, includeUsage);
    }

    private sealed record Request(string Id, long Created, string Model, List<ChatMessage> Messages, ChatOptions Options, bool Stream, bool IncludeUsage);

    private static GatewayException BadRequest(string message, string? param = null, string? code = null) =>
        new(HttpStatusCode.BadRequest, "invalid_request_error", message, param, code);

    private static GatewayException? Refusal(Exception e) => e switch
    {
        GatewayException refusal => refusal,
        BadHttpRequestException bad => new GatewayException((HttpStatusCode)bad.StatusCode, "invalid_request_error", bad.Message),
        MeshException { Code: MeshErrorCode.InvalidArgument or MeshErrorCode.ContextOverflow } mesh => BadRequest(mesh.Message),
        MeshException { Code: MeshErrorCode.RouteUnavailable or MeshErrorCode.PeersUnreachable or MeshErrorCode.LimitExceeded } mesh =>
            new GatewayException(HttpStatusCode.ServiceUnavailable, "mesh_unavailable", mesh.Message, code: "mesh_unavailable"),
        MeshException { Code: MeshErrorCode.Timeout } mesh => new GatewayException(HttpStatusCode.GatewayTimeout, "timeout", mesh.Message, code: "timeout"),
        MeshException mesh => new GatewayException(HttpStatusCode.InternalServerError, "server_error", mesh.Message),
        _ => null,
    };

    private static object ErrorBody(GatewayException refusal) => new { message = refusal.Message, type = refusal.Type, param = refusal.Param, code = refusal.Code };

    private static async Task WriteErrorAsync(HttpContext context, GatewayException refusal) =>
        await Results.Json(new { error = ErrorBody(refusal) }, OpenAiWire.Json, statusCode: (int)refusal.Status).ExecuteAsync(context).ConfigureAwait(false);

    /// <summary>Stops listening (requests in flight are cancelled, their mesh sessions closed) and frees the gateway; the mesh client stays open.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _sessions.Dispose();
        _survey.Dispose();
    }
}
