using System.IO.Pipelines;
using InferenceMesh.Protocol;

namespace InferenceMesh.Protocol.Tests;

/// <summary>Measures wall-clock delays, so it runs alone: a test beside it (even one loading exception resources) skews the clock.</summary>
[CollectionDefinition(nameof(DelayedDuplexPipeTests), DisableParallelization = true)]
[Collection(nameof(DelayedDuplexPipeTests))]
public sealed class DelayedDuplexPipeTests
{
    [Fact]
    public async Task DelaysEveryFrameWithoutSerializingThem()
    {
        var toServer = new Pipe();
        var toClient = new Pipe();
        var delay = TimeSpan.FromMilliseconds(100);
        var delayed = new DelayedDuplexPipe(new DuplexPipe(toClient.Reader, toServer.Writer), delay);
        var sender = new StageChannel(delayed);
        var receiver = new StageChannel(new DuplexPipe(toServer.Reader, toClient.Writer));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 5; i++) await sender.SendAsync(new CloseSession($"s{i}"));
        Assert.True(clock.ElapsedMilliseconds < 50, "sending must not wait for the delay");
        for (var i = 0; i < 5; i++) Assert.Equal($"s{i}", Assert.IsType<CloseSession>(await receiver.ReceiveAsync()).SessionId);
        var elapsed = clock.Elapsed;
        Assert.InRange(elapsed.TotalMilliseconds, 95, 400);
        await delayed.DisposeAsync();
        Assert.Null(await receiver.ReceiveAsync());
    }
}
