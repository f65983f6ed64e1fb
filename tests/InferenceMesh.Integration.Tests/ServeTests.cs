using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using InferenceMesh.Cli;
using InferenceMesh.Tests.Shared;
using OpenAI;
using OpenAI.Chat;

namespace InferenceMesh.Integration.Tests;

/// <summary><c>inferencemesh serve</c> in front of a real 3-node swarm of node processes, asked through the official OpenAI .NET SDK.</summary>
public sealed class ServeTests
{
    private const string Prompt = "Once upon a time";

    private static string ReferenceContinuation => TestModels.Stories260KReferenceText[Prompt.Length..];

    /// <summary>Runs <c>serve</c> in this process until the test ends; returns its URL once it prints its ready line.</summary>
    private static async Task<T> WithServeAsync<T>(LocalSwarmHandle swarm, string[] extra, Func<string, Task<T>> test)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var serving = CliApp.RunAsync(["serve", "--urls", "http://127.0.0.1:0", "--model-name", "stories260K", "--state", swarm.State, .. extra],
            new WriterCliConsole(TextWriter.Synchronized(output), TextWriter.Synchronized(error)), stop.Token);
        try
        {
            await Poll.UntilAsync(() => output.ToString().Contains("\"ready\"") || serving.IsCompleted, "serve's ready line", 60);
            Assert.False(serving.IsCompleted, error.ToString());
            var ready = JsonDocument.Parse(output.ToString().Split('\n')[0]).RootElement;
            return await test(ready.GetProperty("urls")[0].GetString()!);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.Equal(0, await serving);
        }
    }

    private static ChatClient OpenAiChat(string url) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(url + "/v1") }).GetChatClient("stories260K");

    [Fact]
    public async Task OpenAiSdkStreamsTheReferenceContinuationFromAThreeNodeSwarm()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        var promptTokens = InferenceMesh.Onnx.Tokenizer.Llama2cTokenizer.Load(TestModels.Stories260KTokenizer).Encode(Prompt).Count;
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 256 - promptTokens + 1, Temperature = 0 };
        await WithServeAsync(swarm, [], async url =>
        {
            var chat = OpenAiChat(url);
            var streamed = new List<string>();
            await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage(Prompt)], options))
                streamed.AddRange(update.ContentUpdate.Select(p => p.Text));
            Assert.Equal(ReferenceContinuation, string.Concat(streamed));
            var whole = (await chat.CompleteChatAsync([new UserChatMessage(Prompt)], options)).Value;
            Assert.Equal(ReferenceContinuation, whole.Content[0].Text);
            Assert.Equal(options.MaxOutputTokenCount, whole.Usage.OutputTokenCount);
            return true;
        });
    }

    [Fact]
    public async Task SixteenStreamsGetTheirTextsAndTheSeventeenthGets429()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        await WithServeAsync(swarm, ["--max-sessions", "16", "--max-queued", "0"], async url =>
        {
            using var http = new HttpClient { BaseAddress = new Uri(url) };
            var streams = new List<HttpResponseMessage>();
            for (var i = 0; i < 16; i++)
            {
                // Long generations, so all 16 still hold their sessions when the 17th arrives.
                var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(new { model = "stories260K", prompt = Prompt, max_tokens = 480, temperature = 0, stream = true }) };
                var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                streams.Add(response);
            }
            var refused = await http.PostAsJsonAsync("/v1/completions", new { model = "stories260K", prompt = Prompt, max_tokens = 5 });
            Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            Assert.Equal("rate_limit_exceeded", (await refused.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("error").GetProperty("code").GetString());

            var texts = await Task.WhenAll(streams.Select(async response =>
            {
                using (response)
                {
                    var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
                    Assert.Equal("data: [DONE]", events[^1]);
                    return string.Concat(events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()));
                }
            }));
            Assert.All(texts, text => Assert.StartsWith(ReferenceContinuation, text));
            Assert.All(texts, text => Assert.Equal(texts[0], text));
            return true;
        });
    }
}
