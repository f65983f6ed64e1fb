using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Node.Tests;

/// <summary>One peer opening sessions until the KV budget is full stops at its share; another peer still opens one.</summary>
public sealed class KvSharePerPeerTests
{
    private sealed record Link(StageChannel Client, Task Serving);

    private static Link Connect(StageServer server, string peer)
    {
        var toServer = new Pipe();
        var toClient = new Pipe();
        var serving = server.ServeAsync(new StageChannel(new Duplex(toServer.Reader, toClient.Writer)), peer);
        return new Link(new StageChannel(new Duplex(toClient.Reader, toServer.Writer)), serving);
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }

    [Fact]
    public async Task APeerFillingTheBudgetIsHeldToItsShareAndAnotherPeerStillOpensASession()
    {
        await using var mesh = new InMemoryMesh();
        var probe = mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2));
        var perSession = probe.Span.KvBytesPerPosition(new BlockRange(0, 2)) * 64;
        var node = mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2), new NodeOptions(KvBudgetBytes: perSession * 10, KvSharePerPeer: 0.5));
        var modelId = node.Span.Manifest.ModelId;
        var attacker = Connect(node.Server, "attacker");
        int opened = 0, refused = 0;
        for (var i = 0; i < 20; i++)
        {
            await attacker.Client.SendAsync(new OpenSession((ulong)i, $"a{i}", modelId, new BlockRange(0, 2), 64));
            switch (await attacker.Client.ReceiveAsync())
            {
                case SessionOpened: opened++; break;
                case StageError { Code: StageErrorCode.LimitExceeded } e:
                    Assert.Contains("share of peer attacker", e.Message);
                    refused++;
                    break;
                case var other: Assert.Fail($"unexpected {other}"); break;
            }
        }
        Assert.Equal((5, 15), (opened, refused));
        Assert.Equal(perSession * 5, node.Server.ReservedKvBytes);

        var honest = Connect(node.Server, "honest");
        await honest.Client.SendAsync(new OpenSession(1, "h", modelId, new BlockRange(0, 2), 64));
        Assert.IsType<SessionOpened>(await honest.Client.ReceiveAsync());

        await attacker.Client.DisposeAsync();
        await attacker.Serving.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(perSession, node.Server.ReservedKvBytes);
        await honest.Client.DisposeAsync();
    }
}
