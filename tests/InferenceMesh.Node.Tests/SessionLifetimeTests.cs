using InferenceMesh.Tests.Shared;
using InferenceMesh.Protocol;
using Microsoft.Extensions.Time.Testing;

namespace InferenceMesh.Node.Tests;

/// <summary>
/// A session's KV state outlives every step of it: closing waits for the step inside the executor, fails the
/// steps still queued, and only then frees the executor's state, the reservation and the session's entry.
/// </summary>
public sealed class SessionLifetimeTests
{
    private static readonly TimeSpan Reply = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task BreakingTheClientsStreamWhileItsStepRunsFreesEverythingOnceTheStepEnds()
    {
        var unobserved = new List<Exception>();
        EventHandler<UnobservedTaskExceptionEventArgs> watch = (_, e) =>
        {
            lock (unobserved) unobserved.AddRange(e.Exception.Flatten().InnerExceptions.OfType<ObjectDisposedException>());
        };
        TaskScheduler.UnobservedTaskException += watch;
        try
        {
            await using var node = new GatedNode(new NodeOptions(MaxSessions: 4, IdleTimeout: TimeSpan.FromHours(1)));
            for (var i = 0; i < 200; i++)
            {
                var id = $"broken-{i}";
                var connection = node.Connect();
                await node.OpenAsync(connection.Client, id);
                node.Executor.GateNext();
                await connection.Client.SendAsync(new Step(1, id, 0, GatedNode.Activation(2), []));
                await connection.Client.SendAsync(new Step(2, id, 2, GatedNode.Activation(1), []));
                Assert.Equal(id, await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));

                connection.Break();
                Assert.True(await node.StreamFailures.WaitAsync(Reply), "the server never saw the stream break");
                node.Executor.Release();
                await connection.Serving.WaitAsync(Reply);

                Assert.True(node.Executor.WasClosed(id), $"{id}'s KV state was never dropped");
                Assert.Equal(0, node.Executor.CachedLength(id));
                Assert.Equal(0, node.Server.SessionCount);
                Assert.Equal(0, node.Server.ReservedKvBytes);
                Assert.Empty(node.Executor.Violations);
            }
            Assert.All(node.Executor.Violations, v => Assert.Fail(v));
            Assert.DoesNotContain(node.LogLines, l => l.Contains("disposed", StringComparison.OrdinalIgnoreCase));
        }
        finally
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            TaskScheduler.UnobservedTaskException -= watch;
        }
        Assert.Empty(unobserved);
    }

    [Fact]
    public async Task StepsQueuedBehindARunningStepAreFailedWhenTheSessionClosesAndNeverRun()
    {
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1)));
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "queued");
        node.Executor.GateNext();
        await connection.Client.SendAsync(new Step(1, "queued", 0, GatedNode.Activation(1), []));
        await connection.Client.SendAsync(new Step(2, "queued", 1, GatedNode.Activation(1), []));
        await connection.Client.SendAsync(new Step(3, "queued", 2, GatedNode.Activation(1), []));
        // The stream is served in order: the reply to this probe means steps 2 and 3 are queued.
        await connection.Client.SendAsync(new Step(4, "nobody", 0, GatedNode.Activation(1), []));
        Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        Assert.Equal("queued", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));

        var closing = node.Server.CloseAsync("queued");
        Assert.False(closing.IsCompleted, "closing must wait for the step inside the executor");
        Assert.False(node.Executor.WasClosed("queued"));
        Assert.Equal(1, node.Server.SessionCount);
        node.Executor.Release();
        await closing.WaitAsync(Reply);

        Assert.Equal(1UL, Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).StepId);
        foreach (var stepId in new ulong[] { 2, 3 })
        {
            var error = Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply));
            Assert.Equal(stepId, error.RequestId);
            Assert.Equal(StageErrorCode.UnknownSession, error.Code);
            Assert.Contains("closed before", error.Message);
        }
        Assert.Equal([0], node.Executor.RunsOf("queued"));
        Assert.True(node.Executor.WasClosed("queued"));
        Assert.Equal(0, node.Server.SessionCount);
        Assert.Equal(0, node.Server.ReservedKvBytes);
        Assert.Empty(node.Executor.Violations);

        await connection.Client.SendAsync(new Step(5, "queued", 1, GatedNode.Activation(1), []));
        Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        Assert.Equal([0], node.Executor.RunsOf("queued"));
    }

    [Fact]
    public async Task IdleSessionsExpireOnTheServersClockButABusyOneStays()
    {
        var clock = new FakeTimeProvider();
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromMinutes(1)), clock);
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "idle");
        await node.OpenAsync(connection.Client, "busy");
        await connection.Client.SendAsync(new Step(1, "idle", 0, GatedNode.Activation(1), []));
        Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply));
        Assert.Equal(1, node.Executor.CachedLength("idle"));
        var perSession = node.Server.ReservedKvBytes / 2;

        node.Executor.GateNext();
        await connection.Client.SendAsync(new Step(2, "busy", 0, GatedNode.Activation(1), []));
        Assert.Equal("busy", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));
        clock.Advance(TimeSpan.FromMinutes(2));
        await Poll.UntilAsync(() => node.Server.SessionCount == 1, "the idle session to expire");
        Assert.True(node.Executor.WasClosed("idle"));
        Assert.Equal(0, node.Executor.CachedLength("idle"));
        Assert.Equal(perSession, node.Server.ReservedKvBytes);
        Assert.Contains(node.LogLines, l => l.Contains("session idle idle for"));

        node.Executor.Release();
        Assert.Equal(2UL, Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).StepId);
        Assert.False(node.Executor.WasClosed("busy"));
        Assert.Equal(1, node.Executor.CachedLength("busy"));

        clock.Advance(TimeSpan.FromMinutes(2));
        await Poll.UntilAsync(() => node.Server.SessionCount == 0, "the busy session to expire once idle");
        Assert.Equal(0, node.Server.ReservedKvBytes);
        Assert.Equal(0, node.Executor.CachedLength("busy"));
        Assert.Empty(node.Executor.Violations);
    }

    [Fact]
    public async Task DisposingTheServerWaitsForTheRunningStepAndFreesItsSession()
    {
        var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1)));
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "running");
        node.Executor.GateNext();
        await connection.Client.SendAsync(new Step(1, "running", 0, GatedNode.Activation(1), []));
        Assert.Equal("running", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));

        var disposing = node.DisposeAsync().AsTask();
        Assert.False(disposing.IsCompleted, "disposal must wait for the step inside the executor");
        node.Executor.Release();
        await disposing.WaitAsync(Reply);
        await connection.Serving.WaitAsync(Reply);

        Assert.True(node.Executor.WasClosed("running"));
        Assert.Equal(0, node.Server.SessionCount);
        Assert.Equal(0, node.Server.ReservedKvBytes);
        Assert.Empty(node.Executor.Violations);
    }
}
