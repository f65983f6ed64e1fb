using InferenceMesh.Core;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Node.Tests;

/// <summary>The pool counters are process-wide: these tests run alone, after the parallel ones.</summary>
[Collection(nameof(RefusedStepBufferTests))]
[CollectionDefinition(nameof(RefusedStepBufferTests), DisableParallelization = true)]
public sealed class RefusedStepBufferTests
{
    private static readonly TimeSpan Reply = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task StepsRefusedOnArrivalGiveTheirDecodedActivationsBackToThePool()
    {
        await using var node = new GatedNode(new NodeOptions(IdleTimeout: TimeSpan.FromHours(1), MaxQueuedStepsPerSession: 1, MaxConcurrentSteps: 1, MaxBatchSize: 1));
        var connection = node.Connect();
        await node.OpenAsync(connection.Client, "held");
        var baseline = PooledBuffers.Outstanding;
        var rentsBefore = TensorData.PoolRents;

        // Steps for a session this node does not hold: each is decoded into a pooled buffer, then refused.
        for (var i = 0; i < 8; i++)
            await connection.Client.SendAsync(new Step((ulong)(i + 1), "nobody", 0, GatedNode.Activation(1), []));
        for (var i = 0; i < 8; i++)
            Assert.Equal(StageErrorCode.UnknownSession, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        // A full queue: the first step is held inside the executor, the second waits, the third is refused as overloaded.
        node.Executor.GateNext();
        await connection.Client.SendAsync(new Step(20, "held", 0, GatedNode.Activation(1), []));
        Assert.Equal("held", await node.Executor.Entered.ReadAsync().AsTask().WaitAsync(Reply));
        await connection.Client.SendAsync(new Step(21, "held", 1, GatedNode.Activation(1), []));
        await connection.Client.SendAsync(new Step(22, "held", 2, GatedNode.Activation(1), []));
        Assert.Equal(StageErrorCode.Overloaded, Assert.IsType<StageError>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Code);
        node.Executor.Release();
        for (var i = 0; i < 2; i++) Assert.IsType<StepResult>(await connection.Client.ReceiveAsync().AsTask().WaitAsync(Reply)).Activation.Dispose();

        Assert.True(TensorData.PoolRents - rentsBefore >= 11, $"only {TensorData.PoolRents - rentsBefore} buffers were rented");
        await Poll.UntilAsync(() => Task.FromResult(PooledBuffers.Outstanding <= baseline), "every refused step's buffer to be returned", detail: () => $"{PooledBuffers.Outstanding - baseline} buffers still out");
    }
}
