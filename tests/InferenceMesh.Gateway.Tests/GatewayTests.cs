using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;
using OpenAI;
using OpenAI.Chat;

namespace InferenceMesh.Gateway.Tests;

/// <summary>The OpenAI-compatible gateway over an in-memory mesh of real stage servers, driven by the official OpenAI .NET SDK and by raw HTTP.</summary>
public sealed class GatewayTests : IAsyncLifetime
{
    private const string Prompt = "Once upon a time";
    private const string Model = "stories260K";
    private readonly InMemoryMesh _mesh = new();
    private MeshClient _client = null!;
    private MeshGateway _gateway = null!;
    private HttpClient _http = null!;

    public async Task InitializeAsync()
    {
        _mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2));
        _mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(2, 5));
        _client = MeshClient.Open(MeshModels.Stories260KPerBlock, (peer, _, ct) => _mesh.ConnectorFor("gateway").ConnectAsync(peer.ToString(), [], ct), new Directory(_mesh));
        _gateway = await MeshGateway.StartAsync(_client, new GatewayOptions { Urls = ["http://127.0.0.1:0"], ModelName = Model, MaxConcurrentSessions = 2, MaxQueuedRequests = 0, MaxRequestBodyBytes = 64 * 1024 });
        _http = new HttpClient { BaseAddress = new Uri(_gateway.Urls[0]) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _gateway.DisposeAsync();
        await _client.DisposeAsync();
        await _mesh.DisposeAsync();
    }

    private sealed class Directory(InMemoryMesh mesh) : IServerDirectory
    {
        public ValueTask<IReadOnlyList<P2P.Dht.ServerInfo>> ListAsync(string modelId, CancellationToken cancellation) =>
            ValueTask.FromResult<IReadOnlyList<P2P.Dht.ServerInfo>>(mesh.Nodes.Select(n => new P2P.Dht.ServerInfo
            {
                Peer = P2P.Identity.PeerId.Parse(n.PeerId), ModelId = modelId, Block = n.Span.Blocks.Start, Span = n.Span.Blocks, Throughput = 100,
                IssuedAt = DateTimeOffset.UnixEpoch, ExpiresAt = DateTimeOffset.MaxValue,
            }).ToList());

        public double RoundTripMs(P2P.Identity.PeerId server) => 1;
    }

    private ChatClient OpenAiChat() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(_gateway.Urls[0] + "/v1") }).GetChatClient(Model);

    /// <summary>New tokens after the prompt that end where the 256-position reference text ends.</summary>
    private int ReferenceNewTokens => 256 - _client.Tokenizer.Encode(Prompt).Count + 1;

    private static string ReferenceContinuation => TestModels.Stories260KReferenceText[Prompt.Length..];

    [Fact]
    public async Task OpenAiSdkChatCompletionIsTheReferenceContinuation()
    {
        var completion = (await OpenAiChat().CompleteChatAsync([new UserChatMessage(Prompt)], new ChatCompletionOptions { MaxOutputTokenCount = ReferenceNewTokens, Temperature = 0 })).Value;
        Assert.Equal(ReferenceContinuation, completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(_client.Tokenizer.Encode(Prompt).Count, completion.Usage.InputTokenCount);
        Assert.Equal(ReferenceNewTokens, completion.Usage.OutputTokenCount);
    }

    [Fact]
    public async Task OpenAiSdkStreamsTheSameText()
    {
        var updates = new List<StreamingChatCompletionUpdate>();
        await foreach (var update in OpenAiChat().CompleteChatStreamingAsync([new UserChatMessage(Prompt)], new ChatCompletionOptions { MaxOutputTokenCount = ReferenceNewTokens, Temperature = 0 }))
            updates.Add(update);
        Assert.True(updates.Count > 10, $"{updates.Count} updates");
        Assert.Equal(ReferenceContinuation, string.Concat(updates.SelectMany(u => u.ContentUpdate).Select(p => p.Text)));
        Assert.Equal(ChatFinishReason.Length, updates.Last(u => u.FinishReason is not null).FinishReason);
    }

    [Fact]
    public async Task StopSequenceEndsTheChatWithFinishReasonStop()
    {
        var completion = (await OpenAiChat().CompleteChatAsync([new UserChatMessage(Prompt)], new ChatCompletionOptions { MaxOutputTokenCount = 200, Temperature = 0, StopSequences = { "Lily." } })).Value;
        Assert.Equal(", there was a little girl named ", completion.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task ModelsListsTheServedModel()
    {
        var models = await _http.GetFromJsonAsync<JsonElement>("/v1/models");
        Assert.Equal("list", models.GetProperty("object").GetString());
        var model = Assert.Single(models.GetProperty("data").EnumerateArray());
        Assert.Equal(Model, model.GetProperty("id").GetString());
        Assert.Equal(_client.Manifest.ModelId, model.GetProperty("root").GetString());
    }

    [Fact]
    public async Task CompletionsAnswerPlainAndAsServerSentEvents()
    {
        var plain = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = ReferenceNewTokens, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, plain.StatusCode);
        var body = await plain.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("text_completion", body.GetProperty("object").GetString());
        var choice = Assert.Single(body.GetProperty("choices").EnumerateArray());
        Assert.Equal(ReferenceContinuation, choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(ReferenceNewTokens, body.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var streamed = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = 30, temperature = 0, stream = true });
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType!.MediaType);
        var events = (await streamed.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToList();
        var text = string.Concat(chunks.Select(c => c.GetProperty("choices")[0].GetProperty("text").GetString()));
        var thirty = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = 30, temperature = 0 });
        Assert.Equal((await thirty.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices")[0].GetProperty("text").GetString(), text);
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData("""{"model":"gpt-4","prompt":"x"}""", HttpStatusCode.NotFound, "model_not_found", "model")]
    [InlineData("""{"model":"stories260K","prompt":"x","n":2}""", HttpStatusCode.BadRequest, null, "n")]
    [InlineData("""{"model":"stories260K","prompt":"x","temperature":3}""", HttpStatusCode.BadRequest, null, "temperature")]
    [InlineData("""{"model":"stories260K","prompt":"x","max_tokens":0}""", HttpStatusCode.BadRequest, null, "max_tokens")]
    [InlineData("""{"model":"stories260K","prompt":["x"]}""", HttpStatusCode.BadRequest, null, "prompt")]
    [InlineData("""{"model":"stories260K","prompt":"x","max_tokens":"many"}""", HttpStatusCode.BadRequest, null, null)]
    [InlineData("""not json""", HttpStatusCode.BadRequest, null, null)]
    public async Task BadRequestsGetOpenAiErrorObjects(string body, HttpStatusCode status, string? code, string? param)
    {
        var response = await _http.PostAsync("/v1/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(status, response.StatusCode);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error");
        Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        if (code is not null) Assert.Equal(code, error.GetProperty("code").GetString());
        if (param is not null) Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task PromptOverTheContextIsRefusedBeforeAnyTokenIsGenerated()
    {
        var response = await _http.PostAsJsonAsync("/v1/chat/completions", new { model = Model, messages = new[] { new { role = "user", content = string.Join(' ', Enumerable.Repeat(Prompt, 200)) } } });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("context_length_exceeded", (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());
    }

    [Fact]
    public async Task OversizedBodyIsRefused()
    {
        var response = await _http.PostAsync("/v1/completions", new StringContent($$"""{"model":"stories260K","prompt":"{{new string('a', 100_000)}}"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task FullSessionsAnswer429AndAbandonedStreamsFreeTheirSessions()
    {
        // Two slots, no queue: two streams held open take both, a third request is refused.
        var held = new List<HttpResponseMessage>();
        for (var i = 0; i < 2; i++)
        {
            var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { model = Model, prompt = Prompt, max_tokens = 400, stream = true }) };
            var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            held.Add(response);
        }
        var refused = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = 5 });
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("rate_limit_exceeded", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());

        foreach (var response in held) response.Dispose();
        await Poll.UntilAsync(() => _mesh.Nodes.All(n => n.Server.SessionCount == 0 && n.Server.ReservedKvBytes == 0), "the abandoned streams' sessions to close on every server", 30);
        var admitted = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = 5 });
        Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
    }

    [Fact]
    public async Task MetricsParseAsPrometheusTextAndMoveWithTraffic()
    {
        var before = PrometheusText.Parse(await _http.GetStringAsync("/metrics"));
        var response = await _http.PostAsJsonAsync("/v1/completions", new { model = Model, prompt = Prompt, max_tokens = 12, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await _http.PostAsJsonAsync("/v1/completions", new { model = "gpt-4", prompt = Prompt });
        var after = PrometheusText.Parse(await _http.GetStringAsync("/metrics"));

        double Delta(string sample) => after.GetValueOrDefault(sample) - before.GetValueOrDefault(sample);
        Assert.Equal(12, Delta("inferencemesh_gateway_generated_tokens_total"));
        Assert.Equal(_client.Tokenizer.Encode(Prompt).Count, Delta("inferencemesh_gateway_prompt_tokens_total"));
        Assert.Equal(1, Delta("inferencemesh_gateway_requests_total{endpoint=\"completions\",status=\"200\"}"));
        Assert.Equal(1, Delta("inferencemesh_gateway_requests_total{endpoint=\"completions\",status=\"404\"}"));
        Assert.Equal(1, Delta("inferencemesh_gateway_generation_seconds_count"));
        // Two hops (0:2 and 2:5), each observed once per step it ran.
        var hopSteps = after.Where(s => s.Key.StartsWith("inferencemesh_gateway_hop_step_seconds_count{", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, hopSteps.Count);
        Assert.All(hopSteps, s => Assert.True(s.Value >= 12, $"{s.Key} = {s.Value}"));
        Assert.True(after.ContainsKey("inferencemesh_gateway_sessions_open"));
        Assert.Equal(0, after["inferencemesh_gateway_recoveries_total"]);
    }

    [Fact]
    public async Task ApiSwarmListsEveryServerWithItsBlocksAndTheBlockMap()
    {
        var response = await _http.GetAsync("/api/swarm");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var swarm = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(Model, swarm.GetProperty("model").GetString());
        Assert.Equal(_client.Manifest.ModelId, swarm.GetProperty("model_id").GetString());
        Assert.Equal(5, swarm.GetProperty("block_count").GetInt32());
        Assert.Equal([1, 1, 1, 1, 1], swarm.GetProperty("blocks").EnumerateArray().Select(b => b.GetProperty("online_servers").GetInt32()));
        var peers = swarm.GetProperty("peers").EnumerateArray().ToList();
        Assert.Equal(_mesh.Nodes.Select(n => (n.PeerId, n.Span.Blocks.ToString())), peers.Select(p => (p.GetProperty("peer_id").GetString()!, p.GetProperty("blocks").GetString()!)));
        Assert.All(peers, p =>
        {
            Assert.Equal("online", p.GetProperty("state").GetString());
            Assert.Equal(100, p.GetProperty("throughput").GetDouble());
            Assert.Equal(1, p.GetProperty("round_trip_ms").GetDouble());
            // The in-memory directory has no libp2p host, so it cannot say how the peers are reached, and says so.
            Assert.Equal("unknown", p.GetProperty("connection").GetString());
        });
    }

    [Fact]
    public async Task HealthPageIsServedFromTheAssemblyAndPollsApiSwarm()
    {
        var response = await _http.GetAsync("/");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        var page = await response.Content.ReadAsStringAsync();
        Assert.Contains("<title>InferenceMesh swarm</title>", page);
        Assert.Contains("fetch(\"api/swarm\"", page);
        Assert.Contains("const refreshMs = 2000;", page);
    }
}
