using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Compute.Tests;

public sealed class SamplerTests
{
    [Fact]
    public void GreedyTakesTheFirstLargest() => Assert.Equal(2, new Sampler(0, 0.9f, 1).Sample([0.1f, 3f, 5f, 5f]));

    [Fact]
    public void TopPNeverPicksOutsideTheNucleus()
    {
        var sampler = new Sampler(1f, 0.5f, 7);
        for (var i = 0; i < 200; i++)
            Assert.Equal(0, sampler.Sample([10f, 0f, 0f, 0f]));
    }

    [Fact]
    public void SamplingFollowsTheDistribution()
    {
        var sampler = new Sampler(1f, 1f, 3);
        var counts = new int[2];
        for (var i = 0; i < 4000; i++) counts[sampler.Sample([MathF.Log(3f), 0f])]++;
        Assert.InRange(counts[0] / 4000.0, 0.72, 0.78);
    }

    [Theory]
    [InlineData(-1f, 0.9f)]
    [InlineData(1f, 1.5f)]
    public void RefusesBadSettings(float temperature, float topP) =>
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => new Sampler(temperature, topP, 1)).Code);
}
