using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Protocol.Tests;

public sealed class StageChannelTests
{
    private static (IDuplexPipe A, IDuplexPipe B) Pair(PipeOptions? options = null)
    {
        var ab = new Pipe(options ?? PipeOptions.Default);
        var ba = new Pipe(options ?? PipeOptions.Default);
        return (new DuplexPipe(ba.Reader, ab.Writer), new DuplexPipe(ab.Reader, ba.Writer));
    }

    [Fact]
    public async Task ManyStepsInFlightOnOneStreamComeBackInOrder()
    {
        var (clientPipe, serverPipe) = Pair();
        await using var client = new StageChannel(clientPipe);
        await using var server = new StageChannel(serverPipe);
        var serve = Task.Run(async () =>
        {
            while (await server.ReceiveAsync() is Step step)
                await server.SendAsync(new StepResult(step.StepId, step.SessionId, 1, step.Activation));
        });
        const int steps = 200;
        var send = Task.Run(async () =>
        {
            for (var i = 0; i < steps; i++)
                await client.SendAsync(new Step((ulong)i, "s", i, TensorData.FromFloats([1, 1, 4], [i, i + 1, i + 2, i + 3]), []));
        });
        for (var i = 0; i < steps; i++)
        {
            var result = Assert.IsType<StepResult>(await client.ReceiveAsync());
            Assert.Equal((ulong)i, result.StepId);
            Assert.Equal(i + 3f, result.Activation.AsFloats()[3]);
        }
        await send;
        await clientPipe.Output.CompleteAsync();
        await serve.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task ASlowReaderHoldsTheSenderBack()
    {
        var (clientPipe, serverPipe) = Pair(new PipeOptions(pauseWriterThreshold: 64 * 1024, resumeWriterThreshold: 32 * 1024));
        await using var client = new StageChannel(clientPipe);
        await using var server = new StageChannel(serverPipe);
        var big = TensorData.FromFloats([1, 16, 1024], new float[16 * 1024]);
        var sent = 0;
        var sender = Task.Run(async () =>
        {
            for (var i = 0; i < 8; i++)
            {
                await client.SendAsync(new Step((ulong)i, "s", 0, big, []));
                Interlocked.Increment(ref sent);
            }
        });
        await Task.Delay(300);
        Assert.True(Volatile.Read(ref sent) < 8, "the sender should be paused while nobody reads");
        for (var i = 0; i < 8; i++) Assert.IsType<Step>(await server.ReceiveAsync());
        await sender.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task StreamEndingInsideAFrameIsATypedError()
    {
        var (clientPipe, serverPipe) = Pair();
        await using var server = new StageChannel(serverPipe);
        await clientPipe.Output.WriteAsync(new byte[] { 0x20, 0x81, 0x01 });
        await clientPipe.Output.CompleteAsync();
        var error = await Assert.ThrowsAsync<MeshException>(async () => await server.ReceiveAsync());
        Assert.Equal(MeshErrorCode.ProtocolViolation, error.Code);
    }

    [Fact]
    public async Task CleanCloseBetweenFramesEndsReceiving()
    {
        var (clientPipe, serverPipe) = Pair();
        await using var client = new StageChannel(clientPipe);
        await using var server = new StageChannel(serverPipe);
        await client.SendAsync(new CloseSession("s"));
        await clientPipe.Output.CompleteAsync();
        Assert.IsType<CloseSession>(await server.ReceiveAsync());
        Assert.Null(await server.ReceiveAsync());
    }
}
