using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// The gateway on a real 3-node swarm, from outside .NET (the <c>openai</c> npm package), from a client that walks away
/// mid-stream, and through the nodes' own Prometheus metrics.
/// </summary>
public sealed class GatewaySwarmTests(GatewaySwarm mesh) : IClassFixture<GatewaySwarm>
{
    private const string Prompt = "Once upon a time";

    private static string ReferenceContinuation => TestModels.Stories260KReferenceText[Prompt.Length..];

    private static int ReferenceNewTokens => 256 - Llama2cTokenizer.Load(TestModels.Stories260KTokenizer).Encode(Prompt).Count + 1;

    [Fact]
    public async Task OpenAiNpmPackageStreamsTheReferenceContinuation()
    {
        var interop = Path.Combine(TestModels.RepositoryRoot, "tests", "interop");
        Assert.True(Directory.Exists(Path.Combine(interop, "node_modules", "openai")), $"the openai npm package is not installed: run `npm ci --prefix tests/interop` (Node >= 20)");
        var start = new ProcessStartInfo("node", ["openai-stream.mjs", mesh.Url + "/v1", Prompt, ReferenceNewTokens.ToString(), "stories260K"])
        {
            WorkingDirectory = interop,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var node = Process.Start(start)!;
        var output = node.StandardOutput.ReadToEndAsync();
        var error = node.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await node.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            node.Kill(entireProcessTree: true);
            Assert.Fail($"node openai-stream.mjs did not finish in 90 s: {await error}");
        }
        Assert.True(node.ExitCode == 0, $"node exited {node.ExitCode}: {await error}");
        var texts = JsonDocument.Parse(await output).RootElement;
        Assert.Equal(ReferenceContinuation, texts.GetProperty("chat").GetString());
        Assert.Equal(ReferenceContinuation, texts.GetProperty("completion").GetString());
    }

    [Fact]
    public async Task ClientsThatDisconnectMidStreamFreeTheirSessionsOnEveryNodeWithinTheStepTimeout()
    {
        using var scraper = new HttpClient();
        var streams = new List<(HttpClient Http, HttpResponseMessage Response, StreamReader Reader)>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var http = new HttpClient { BaseAddress = new Uri(mesh.Url) };
                var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
                {
                    Content = JsonContent.Create(new { model = "stories260K", messages = new[] { new { role = "user", content = Prompt } }, max_tokens = 400, temperature = 0, stream = true }),
                };
                var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                streams.Add((http, response, new StreamReader(await response.Content.ReadAsStreamAsync())));
            }
            foreach (var (_, _, reader) in streams)
                for (var events = 0; events < 5;)
                    if ((await reader.ReadLineAsync())!.StartsWith("data: {", StringComparison.Ordinal)) events++;
            var open = await mesh.ScrapeNodesAsync(scraper);
            Assert.True(open.Values.Sum(m => m["inferencemesh_node_sessions_open"]) >= 3, "the streams hold sessions on the nodes: " + Describe(open));
        }
        finally
        {
            foreach (var (http, response, reader) in streams)
            {
                reader.Dispose();
                response.Dispose();
                http.Dispose();
            }
        }

        Dictionary<string, Dictionary<string, double>> latest = [];
        await Poll.UntilAsync(async () =>
        {
            latest = await mesh.ScrapeNodesAsync(scraper);
            return latest.Values.All(m => m["inferencemesh_node_sessions_open"] == 0);
        }, "every node to close the sessions of the clients that left", GatewaySwarm.StepTimeout.TotalSeconds, intervalMs: 100, detail: () => Describe(latest));
        Assert.All(latest.Values, m => Assert.Equal(0, m["inferencemesh_node_kv_reserved_bytes"]));
    }

    [Fact]
    public async Task StageBytesCountersMoveWithTraffic()
    {
        using var scraper = new HttpClient();
        var before = await mesh.ScrapeNodesAsync(scraper);
        var gatewayBefore = PrometheusText.Parse(await scraper.GetStringAsync(mesh.Url + "/metrics"));
        using var http = new HttpClient { BaseAddress = new Uri(mesh.Url) };
        var response = await http.PostAsJsonAsync("/v1/completions", new { model = "stories260K", prompt = Prompt, max_tokens = 20, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var after = await mesh.ScrapeNodesAsync(scraper);
        var gatewayAfter = PrometheusText.Parse(await scraper.GetStringAsync(mesh.Url + "/metrics"));

        double Delta(string node, string metric) => after[node][metric] - before[node][metric];
        var onRoute = after.Keys.Where(node => Delta(node, "inferencemesh_node_steps_total") > 0).ToList();
        Assert.NotEmpty(onRoute);
        // Every step carries a [1, k, dim] fp32 activation in and out of each hop.
        var activationBytes = 20 * mesh.Client.Manifest.Config!.Dim * sizeof(float);
        Assert.All(onRoute, node =>
        {
            Assert.True(Delta(node, "inferencemesh_node_stage_bytes_received_total") > activationBytes, $"{node} received {Delta(node, "inferencemesh_node_stage_bytes_received_total")} bytes");
            Assert.True(Delta(node, "inferencemesh_node_stage_bytes_sent_total") > activationBytes, $"{node} sent {Delta(node, "inferencemesh_node_stage_bytes_sent_total")} bytes");
        });
        Assert.All(after.Keys.Except(onRoute), node => Assert.Equal(0, Delta(node, "inferencemesh_node_stage_bytes_received_total")));
        Assert.True(gatewayAfter["inferencemesh_gateway_stage_bytes_sent_total"] - gatewayBefore["inferencemesh_gateway_stage_bytes_sent_total"] > activationBytes);
        Assert.True(gatewayAfter["inferencemesh_gateway_stage_bytes_received_total"] - gatewayBefore["inferencemesh_gateway_stage_bytes_received_total"] > activationBytes);
    }

    private static string Describe(Dictionary<string, Dictionary<string, double>> metrics) =>
        string.Join(", ", metrics.Select(m => $"{m.Key}: {m.Value["inferencemesh_node_sessions_open"]} sessions"));
}
