using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Node.Tests;

public sealed class ContinuousBatchingTests
{
    private static readonly TimeSpan Reply = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task StepsThatWaitTogetherRunAsOneBatchAndGiveWhatEachGivesAlone()
    {
        // One round at a time, so the steps sent while the first is held inside the executor all wait for the next round.
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1), MaxConcurrentSteps: 1));
        var connection = node.Connect();
        string[] sessions = ["alone", "b1", "b2", "b3"];
        foreach (var session in sessions) await node.OpenAsync(connection.Client, session);
        node.Executor.GateNext();
        await connection.Client.SendAsync(new Step(1, "alone", 0, GatedNode.Activation(1), []));
        Assert.Equal("alone", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));
        for (var i = 1; i < sessions.Length; i++)
            await connection.Client.SendAsync(new Step((ulong)(i + 1), sessions[i], 0, GatedNode.Activation(1), []));
        // The stream is served in order: the reply to this probe means the three steps are queued.
        await connection.Client.SendAsync(new Step(9, "nobody", 0, GatedNode.Activation(1), []));
        Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        node.Executor.Release();

        var outputs = new Dictionary<string, byte[]>();
        for (var i = 0; i < sessions.Length; i++)
        {
            var result = Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply));
            outputs[result.SessionId] = result.Activation.Bytes.ToArray();
        }
        Assert.All(sessions.Skip(1), s => Assert.Equal(outputs["alone"], outputs[s]));
        var sizes = node.Server.BatchSizeCounts();
        Assert.Equal(1, sizes[0]);
        Assert.Equal(1, sizes[1]);
        Assert.Equal(2, node.Server.BatchesRun);
        Assert.Equal(4, node.Server.BatchedSteps);
        Assert.Empty(node.Executor.Violations);
    }

    [Fact]
    public async Task ALongPrefillRunsInChunksBetweenAnotherSessionsDecodeSteps()
    {
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1), MaxConcurrentSteps: 1, PrefillChunk: 4));
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "decode", maxLength: 16);
        await node.OpenAsync(connection.Client, "prefill", maxLength: 64);
        await connection.Client.SendAsync(new Step(1, "decode", 0, GatedNode.Activation(1), []));
        Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply));

        node.Executor.GateNext();
        var prompt = GatedNode.Activation(40);
        await connection.Client.SendAsync(new Step(2, "prefill", 0, prompt, []));
        Assert.Equal("prefill", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));
        await connection.Client.SendAsync(new Step(3, "decode", 1, GatedNode.Activation(1), []));
        await connection.Client.SendAsync(new Step(9, "nobody", 0, GatedNode.Activation(1), []));
        Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        node.Executor.Release();

        var results = new List<StepResult>();
        for (var i = 0; i < 2; i++) results.Add(Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)));
        // The decode step ran in the round right after the first chunk, long before the prefill's last chunk.
        var runs = node.Executor.Runs.ToList();
        Assert.Equal(Enumerable.Range(0, 10).Select(c => c * 4), node.Executor.RunsOf("prefill"));
        Assert.True(runs.IndexOf(("decode", 1)) < runs.IndexOf(("prefill", 36)), string.Join(' ', runs));
        Assert.Equal(("decode", 1), runs[2]);
        // The chunks' outputs are joined into the step's one result, as a whole run gives it.
        var joined = results.Single(r => r.SessionId == "prefill").Activation;
        Assert.Equal(new long[] { 1, 40, 64 }, joined.Shape);
        Assert.Equal(40, node.Executor.CachedLength("prefill"));
        Assert.Empty(node.Executor.Violations);
    }

    [Fact]
    public async Task MaxBatchSizeOneRunsEveryStepAloneAndWhole()
    {
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1), MaxBatchSize: 1, PrefillChunk: 4));
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "whole", maxLength: 64);
        await connection.Client.SendAsync(new Step(1, "whole", 0, GatedNode.Activation(40), []));
        Assert.Equal(new long[] { 1, 40, 64 }, Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Activation.Shape);
        Assert.Equal([0], node.Executor.RunsOf("whole"));
        Assert.False(node.Server.Batching);
        Assert.Equal(0, node.Server.BatchesRun);
    }
}
