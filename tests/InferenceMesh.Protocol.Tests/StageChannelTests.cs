using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Protocol.Tests;

public sealed class StageChannelTests
{
    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }

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

public sealed class DelayedDuplexPipeTests
{
    [Fact]
    public async Task DelaysEveryFrameWithoutSerializingThem()
    {
        var toServer = new Pipe();
        var toClient = new Pipe();
        var delay = TimeSpan.FromMilliseconds(100);
        var delayed = new DelayedDuplexPipe(new Duplex(toClient.Reader, toServer.Writer), delay);
        var sender = new StageChannel(delayed);
        var receiver = new StageChannel(new Duplex(toServer.Reader, toClient.Writer));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 5; i++) await sender.SendAsync(new CloseSession($"s{i}"));
        Assert.True(clock.ElapsedMilliseconds < 50, "sending must not wait for the delay");
        for (var i = 0; i < 5; i++) Assert.Equal($"s{i}", Assert.IsType<CloseSession>(await receiver.ReceiveAsync()).SessionId);
        var elapsed = clock.Elapsed;
        Assert.InRange(elapsed.TotalMilliseconds, 95, 400);
        await delayed.DisposeAsync();
        Assert.Null(await receiver.ReceiveAsync());
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
