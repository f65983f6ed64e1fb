using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;
using Microsoft.Extensions.AI;

namespace InferenceMesh.Client.Tests;

/// <summary>The mesh behind Microsoft.Extensions.AI's <see cref="IChatClient"/>, over an in-memory mesh of real stage servers.</summary>
public sealed class MeshChatClientTests
{
    private const string Prompt = "Once upon a time";

    /// <summary>Runs <paramref name="test"/> with a chat client over a two-node in-memory mesh, and frees them after.</summary>
    private static async Task WithChatAsync(Func<IChatClient, MeshClient, InMemoryMesh, Task> test)
    {
        await using var mesh = new InMemoryMesh();
        mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2));
        mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(2, 5));
        await using var client = MeshClient.Open(MeshModels.Stories260KPerBlock, mesh.DialerFor("chat"), new MeshDirectory(mesh));
        using IChatClient chat = new MeshChatClient(client);
        await test(chat, client, mesh);
    }

    /// <summary>New tokens after the prompt that end where the 256-position reference text ends.</summary>
    private static int ReferenceNewTokens(MeshClient client) => 256 - client.Tokenizer.Encode(Prompt).Count + 1;

    [Fact]
    public async Task ResponseIsTheReferenceContinuationWithUsageAndFinishReason()
    {
        await WithChatAsync(async (chat, client, mesh) =>
        {
            var response = await chat.GetResponseAsync([new ChatMessage(ChatRole.User, Prompt)], new ChatOptions { MaxOutputTokens = ReferenceNewTokens(client), Temperature = 0 });
            Assert.Equal(TestModels.Stories260KReferenceText[Prompt.Length..], response.Text);
            Assert.Equal(ChatFinishReason.Length, response.FinishReason);
            Assert.Equal(client.Tokenizer.Encode(Prompt).Count, response.Usage!.InputTokenCount);
            Assert.Equal(ReferenceNewTokens(client), response.Usage.OutputTokenCount);
            Assert.Equal(client.Manifest.ModelId, chat.GetService<ChatClientMetadata>()!.DefaultModelId);
        });
    }

    [Fact]
    public async Task StreamedUpdatesAddUpToTheResponse()
    {
        await WithChatAsync(async (chat, client, mesh) =>
        {
            var options = new ChatOptions { MaxOutputTokens = 40, Temperature = 0 };
            var whole = await chat.GetResponseAsync(Prompt, options);
            var updates = await chat.GetStreamingResponseAsync(Prompt, options).ToListAsync();
            Assert.True(updates.Count > 2);
            Assert.Equal(whole.Text, string.Concat(updates.Select(u => u.Text)));
            var last = updates[^1];
            Assert.Equal(ChatFinishReason.Length, last.FinishReason);
            Assert.Equal(40, Assert.Single(last.Contents.OfType<UsageContent>()).Details.OutputTokenCount);
        });
    }

    [Fact]
    public async Task StoppingAStreamEarlyClosesTheSessionOnEveryServer()
    {
        await WithChatAsync(async (chat, client, mesh) =>
        {
            var received = 0;
            await foreach (var update in chat.GetStreamingResponseAsync(Prompt, new ChatOptions { MaxOutputTokens = 200 }))
                if (++received == 5) break;
            await Poll.UntilAsync(() => mesh.Nodes.All(n => n.Server.SessionCount == 0 && n.Server.ReservedKvBytes == 0), "the abandoned session to close on every server");
        });
    }

    [Fact]
    public async Task StopSequenceEndsTheResponseBeforeIt()
    {
        await WithChatAsync(async (chat, client, mesh) =>
        {
            var options = new ChatOptions { MaxOutputTokens = 200, StopSequences = ["Lily."] };
            var response = await chat.GetResponseAsync(Prompt, options);
            // The reference continues ", there was a little girl named Lily. She loved …".
            Assert.Equal(", there was a little girl named ", response.Text);
            Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
            var streamed = await chat.GetStreamingResponseAsync(Prompt, options).ToListAsync();
            Assert.Equal(response.Text, string.Concat(streamed.Select(u => u.Text)));
            Assert.Equal(ChatFinishReason.Stop, streamed[^1].FinishReason);
        });
    }
}
