using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace InferenceMesh.Client.Tests;

/// <summary>A stalled server is found by the step timeout on a fake clock: nothing waits for real time to pass.</summary>
public sealed class StepTimeoutTests
{
    [Theory]
    [InlineData(RouteMode.Chained)]
    [InlineData(RouteMode.Relayed)]
    public async Task StalledServerIsReplacedOnlyOnceTheStepTimeoutHasPassed(RouteMode mode)
    {
        var split = MeshModels.Stories260KPerBlock;
        await using var mesh = new InMemoryMesh();
        mesh.AddNode(split, new BlockRange(0, 2));
        mesh.AddNode(split, new BlockRange(2, 5));
        mesh.AddNode(split, new BlockRange(0, 5));
        var clock = new FakeTimeProvider();
        var options = new MeshClientOptions { Mode = mode, Time = clock, StepTimeout = TimeSpan.FromSeconds(30) };
        await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh), options);
        await using var reference = MeshClient.Open(split, mesh.DialerFor("reference"), new MeshDirectory(mesh), options with { Time = TimeProvider.System });

        await using var session = await client.OpenSessionAsync(16);
        await using var expected = await reference.OpenSessionAsync(16);
        var first = await session.StepAsync([1], 0);
        Assert.Equal(first, await expected.StepAsync([1], 0));

        var victim = session.Route[0].PeerId;
        mesh.Stall(victim);
        var step = session.StepAsync([400], 1).AsTask();
        for (var second = 0; second < 29; second++)
        {
            clock.Advance(TimeSpan.FromSeconds(1));
            await Task.Yield();
        }
        Assert.False(step.IsCompleted, "the step ended before the step timeout passed on the client's clock");

        clock.Advance(TimeSpan.FromSeconds(2));
        // The replacement answers in real time; the fake clock stays put, so no second timeout can fire. The wait is a guard against a hang.
        await step.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(await expected.StepAsync([400], 1), await step);
        Assert.Equal(1, session.Recoveries);
        Assert.DoesNotContain(session.Route, h => h.PeerId == victim);
        Assert.True(client.Routes.IsBanned(InferenceMesh.P2P.Identity.PeerId.Parse(victim)));
    }
}
