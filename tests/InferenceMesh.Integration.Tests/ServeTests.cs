using System.ClientModel;
using System.Text.Json;
using InferenceMesh.Cli;
using InferenceMesh.Tests.Shared;
using OpenAI;
using OpenAI.Chat;

namespace InferenceMesh.Integration.Tests;

/// <summary><c>inferencemesh serve</c> in front of a real swarm of node processes, asked through the official OpenAI .NET SDK.</summary>
public sealed class ServeTests
{
    [Fact]
    public async Task ServeAnswersTheOpenAiSdkFromALocalSwarm()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2);
        var output = new StringWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var serving = CliApp.RunAsync(["serve", "--urls", "http://127.0.0.1:0", "--model-name", "stories260K", "--state", swarm.State], new WriterCliConsole(TextWriter.Synchronized(output), TextWriter.Synchronized(error)), stop.Token);
        try
        {
            await Poll.UntilAsync(() => output.ToString().Contains("\"ready\"") || serving.IsCompleted, "serve's ready line", 60);
            Assert.False(serving.IsCompleted, error.ToString());
            var ready = JsonDocument.Parse(output.ToString().Split('\n')[0]).RootElement;
            var url = ready.GetProperty("urls")[0].GetString()!;

            var chat = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(url + "/v1") }).GetChatClient("stories260K");
            var completion = (await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], new ChatCompletionOptions { MaxOutputTokenCount = 30, Temperature = 0 })).Value;
            Assert.StartsWith(completion.Content[0].Text, TestModels.Stories260KReferenceText["Once upon a time".Length..]);
            Assert.Equal(30, completion.Usage.OutputTokenCount);
        }
        finally
        {
            await stop.CancelAsync();
            Assert.Equal(0, await serving);
        }
    }
}
