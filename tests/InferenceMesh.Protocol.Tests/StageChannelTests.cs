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
    public async Task TrafficCountsEveryWholeFrameOnBothSides()
    {
        var (clientPipe, serverPipe) = Pair();
        var clientTraffic = new StageTraffic();
        var serverTraffic = new StageTraffic();
        await using var client = new StageChannel(clientPipe, traffic: clientTraffic);
        await using var server = new StageChannel(serverPipe, traffic: serverTraffic);
        var step = new Step(7, "s", 0, TensorData.FromFloats([1, 3, 64], new float[3 * 64]), []);
        var frame = new System.Buffers.ArrayBufferWriter<byte>();
        var frameBytes = StageCodec.Write(frame, step);
        Assert.Equal(frame.WrittenCount, frameBytes);

        await client.SendAsync(step);
        await client.SendAsync(step);
        Assert.IsType<Step>(await server.ReceiveAsync());
        Assert.Equal(frameBytes, serverTraffic.BytesReceived);
        Assert.IsType<Step>(await server.ReceiveAsync());
        await server.SendAsync(new CloseSession("s"));

        Assert.IsType<CloseSession>(await client.ReceiveAsync());
        Assert.Equal(2 * frameBytes, clientTraffic.BytesSent);
        Assert.Equal(2 * frameBytes, serverTraffic.BytesReceived);
        Assert.Equal(serverTraffic.BytesSent, clientTraffic.BytesReceived);
        Assert.True(serverTraffic.BytesSent > 0);
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

    [Fact]
    public async Task SendsRacingDisposalEitherArriveWholeOrAreRefused()
    {
        // A small pipe: the first sends fill it, one waits in its flush and the rest, then disposal, for the send lock
        // (SemaphoreSlim serves async waiters in order), so sends 0-49 go out whole and 50-99 are refused.
        var (senderPipe, receiverPipe) = Pair(new PipeOptions(pauseWriterThreshold: 1024, resumeWriterThreshold: 512));
        var sender = new StageChannel(senderPipe);
        await using var receiver = new StageChannel(receiverPipe);
        async Task<bool> Send(int i)
        {
            try
            {
                await sender.SendAsync(new Step((ulong)i, "s", i, TensorData.FromFloats([1, 1, 16], new float[16]), []));
                return true;
            }
            catch (ObjectDisposedException)
            {
                return false;
            }
        }
        var sends = Enumerable.Range(0, 50).Select(Send).ToList();
        Assert.Contains(sends, s => !s.IsCompleted);
        var disposing = sender.DisposeAsync().AsTask();
        sends.AddRange(Enumerable.Range(50, 50).Select(Send));
        var received = 0;
        while (await receiver.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)) is Step) received++;

        var sent = await Task.WhenAll(sends).WaitAsync(TimeSpan.FromSeconds(10));
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(sent.Count(s => s), received);
        Assert.Equal(50, received);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await sender.SendAsync(new CloseSession("late")));
        await sender.DisposeAsync();
    }
}
