using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Node.Tests;

/// <summary>Bad stage traffic gets typed errors and leaves an honest session on the same node undisturbed.</summary>
public sealed class HostileTrafficTests : IAsyncLifetime
{
    private readonly InMemoryMesh _mesh = new();
    private InMemoryMesh.MeshNode _node = null!;
    private StageChannel _honest = null!;
    private string _modelId = "";
    private int _honestPositions;

    public async Task InitializeAsync()
    {
        _node = _mesh.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2), new NodeOptions(MaxSessions: 8, IdleTimeout: TimeSpan.FromSeconds(30)));
        _modelId = _node.Span.Manifest.ModelId;
        _honest = await _mesh.ConnectorFor("honest").ConnectAsync(_node.PeerId, [], default);
        await _honest.SendAsync(new OpenSession(1, "honest", _modelId, new BlockRange(0, 2), 64));
        Assert.IsType<SessionOpened>(await _honest.ReceiveAsync());
        await HonestStepStillWorks();
    }

    public async Task DisposeAsync() => await _mesh.DisposeAsync();

    private static TensorData Activation(int steps, int width = 64) => TensorData.FromFloats([1, steps, width], Enumerable.Range(0, steps * width).Select(i => (i % 7) * 0.1f).ToArray());

    private async Task HonestStepStillWorks()
    {
        await _honest.SendAsync(new Step((ulong)(100 + _honestPositions), "honest", _honestPositions, Activation(1), []));
        var result = Assert.IsType<StepResult>(await _honest.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(2, result.BlockEnd);
        Assert.Equal([1L, 1, 64], result.Activation.Shape);
        _honestPositions++;
    }

    private async Task<StageError> ExpectError(StageChannel channel, StageErrorCode code)
    {
        var error = Assert.IsType<StageError>(await channel.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(error.Code == code, $"expected {code}, got {error.Code}: {error.Message}");
        return error;
    }

    private async Task<StageChannel> Attacker() => await _mesh.ConnectorFor("attacker").ConnectAsync(_node.PeerId, [], default);

    [Fact]
    public async Task GarbageBytesCloseOnlyThatStream()
    {
        var raw = _mesh.ConnectRaw("attacker", _node.PeerId);
        var garbage = new byte[512];
        new Random(5).NextBytes(garbage);
        garbage[0] = 0x40;
        await raw.Output.WriteAsync(garbage);
        var reply = new StageChannel(raw);
        await ExpectError(reply, StageErrorCode.Malformed);
        Assert.Null(await reply.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
        await HonestStepStillWorks();
    }

    [Fact]
    public async Task OversizedFrameIsRefusedBeforeItArrives()
    {
        var raw = _mesh.ConnectRaw("attacker", _node.PeerId);
        var header = new byte[UnsignedVarint.MaxBytes];
        var length = UnsignedVarint.Write(header, 1UL << 32);
        await raw.Output.WriteAsync(header.AsMemory(0, length));
        var error = await ExpectError(new StageChannel(raw), StageErrorCode.Malformed);
        Assert.Contains("limit", error.Message);
        await HonestStepStillWorks();
    }

    [Fact]
    public async Task WrongTensorSizeIsAShapeError()
    {
        await using var attacker = await Attacker();
        await attacker.SendAsync(new OpenSession(1, "evil", _modelId, new BlockRange(0, 2), 16));
        Assert.IsType<SessionOpened>(await attacker.ReceiveAsync());
        await attacker.SendAsync(new Step(2, "evil", 0, Activation(1, 63), []));
        await ExpectError(attacker, StageErrorCode.ShapeMismatch);
        await attacker.SendAsync(new Step(3, "evil", 0, Activation(1), []));
        Assert.IsType<StepResult>(await attacker.ReceiveAsync());
        await HonestStepStillWorks();
    }

    [Fact]
    public async Task StepOutOfOrderIsAShapeError()
    {
        await using var attacker = await Attacker();
        await attacker.SendAsync(new OpenSession(1, "evil", _modelId, new BlockRange(0, 2), 16));
        Assert.IsType<SessionOpened>(await attacker.ReceiveAsync());
        await attacker.SendAsync(new Step(2, "evil", 5, Activation(1), []));
        await ExpectError(attacker, StageErrorCode.ShapeMismatch);
    }

    [Fact]
    public async Task UnknownSessionsAndOtherSessionsStepsAreRefused()
    {
        await using var attacker = await Attacker();
        await attacker.SendAsync(new Step(1, "nobody", 0, Activation(1), []));
        await ExpectError(attacker, StageErrorCode.UnknownSession);
        await HonestStepStillWorks();
    }

    [Fact]
    public async Task WrongModelAndUnservedBlocksAreRefused()
    {
        await using var attacker = await Attacker();
        await attacker.SendAsync(new OpenSession(1, "a", new string('0', 64), new BlockRange(0, 2), 16));
        await ExpectError(attacker, StageErrorCode.UnknownModel);
        await attacker.SendAsync(new OpenSession(2, "b", _modelId, new BlockRange(0, 3), 16));
        await ExpectError(attacker, StageErrorCode.BlocksNotServed);
        await attacker.SendAsync(new OpenSession(3, "c", _modelId, new BlockRange(0, 2), 100_000));
        await ExpectError(attacker, StageErrorCode.ContextOverflow);
    }

    [Fact]
    public async Task FloodOfOpensHitsTheSessionLimitAndFreesOnClose()
    {
        await using var attacker = await Attacker();
        var opened = 0;
        var refused = 0;
        for (var i = 0; i < 200; i++)
        {
            await attacker.SendAsync(new OpenSession((ulong)i, $"flood-{i}", _modelId, new BlockRange(0, 2), 64));
            switch (await attacker.ReceiveAsync())
            {
                case SessionOpened: opened++; break;
                case StageError { Code: StageErrorCode.LimitExceeded }: refused++; break;
                case var other: Assert.Fail($"unexpected {other}"); break;
            }
        }
        Assert.Equal(7, opened);
        Assert.Equal(193, refused);
        await HonestStepStillWorks();
        await attacker.DisposeAsync();
        await Poll.UntilAsync(() => _node.Server.SessionCount == 1, "the attacker's sessions to close with its stream");
        Assert.Equal(_node.Span.KvBytesPerPosition(new BlockRange(0, 2)) * 64, _node.Server.ReservedKvBytes);
    }

    [Fact]
    public async Task KvBudgetIsEnforcedInBytes()
    {
        var perPosition = _node.Span.KvBytesPerPosition(new BlockRange(0, 2));
        Assert.Equal(2 * 2 * 32 * 4, perPosition);
        await using var mesh2 = new InMemoryMesh();
        var small = mesh2.AddNode(MeshModels.Stories260KPerBlock, new BlockRange(0, 2), new NodeOptions(KvBudgetBytes: perPosition * 100));
        await using var client = await mesh2.ConnectorFor("c").ConnectAsync(small.PeerId, [], default);
        await client.SendAsync(new OpenSession(1, "a", _modelId, new BlockRange(0, 2), 60));
        Assert.IsType<SessionOpened>(await client.ReceiveAsync());
        // stories260K's stages keep their caches in blocks of 16 positions, so 60 positions may hold 64.
        Assert.Equal(perPosition * 64, small.Server.ReservedKvBytes);
        await client.SendAsync(new OpenSession(2, "b", _modelId, new BlockRange(0, 2), 60));
        var error = await ExpectError(client, StageErrorCode.LimitExceeded);
        Assert.Contains("KV cache budget", error.Message);
        await client.SendAsync(new CloseSession("a"));
        await client.SendAsync(new OpenSession(3, "b", _modelId, new BlockRange(0, 2), 60));
        Assert.IsType<SessionOpened>(await client.ReceiveAsync());
    }
}
