using InferenceMesh.Core;
using InferenceMesh.Node;

namespace InferenceMesh.Node.Tests;

public sealed class StageFaultTests
{
    [Fact]
    public void EveryDocumentedFaultParses()
    {
        Assert.Equal(new StageFault(StageFault.FaultKind.Noise, 0.5), StageFault.Parse(["noise=0.5"]));
        Assert.Equal(new StageFault(StageFault.FaultKind.SkipBlock, 3), StageFault.Parse(["skip-block=3"]));
        Assert.Equal(StageFault.FaultKind.WeightsFp16, StageFault.Parse(["weights=fp16"]).Kind);
        Assert.Equal(StageFault.FaultKind.WeightsInt8, StageFault.Parse(["weights=int8"]).Kind);
        Assert.Equal(StageFault.FaultKind.WeightsOtherSeed, StageFault.Parse(["weights=other-seed"]).Kind);
        Assert.Equal(new StageFault(StageFault.FaultKind.Noise, 1, 0.01, 0.5, 7), StageFault.Parse(["noise=1,rate=0.01", "sessions=0.5", "seed=7"]));
    }

    [Theory]
    [InlineData("noise")]
    [InlineData("noise=-1")]
    [InlineData("rate=0.5")]
    [InlineData("weights=fp8")]
    [InlineData("teleport=1")]
    [InlineData("noise=1,rate=2")]
    public void MalformedFaultsAreInvalidArguments(string fault)
    {
        var error = Assert.Throws<MeshException>(() => StageFault.Parse([fault]));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
    }

    [Fact]
    public void AFaultIsRefusedUnlessTheEnvironmentAllowsIt()
    {
        Assert.NotEqual("1", Environment.GetEnvironmentVariable(StageFault.AllowVariable));
        var error = Assert.Throws<MeshException>(() => StageFault.Parse(["noise=1"]).EnsureAllowed());
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains(StageFault.AllowVariable, error.Message);
    }

    [Fact]
    public void RateAndSessionsChooseAboutTheirShareOfPositionsAndSessions()
    {
        var fault = new StageFault(StageFault.FaultKind.Noise, 1, Rate: 0.01, Sessions: 0.5);
        var sessions = Enumerable.Range(0, 400).Select(i => $"session-{i}").ToList();
        var targeted = sessions.Count(s => Enumerable.Range(0, 2000).Any(p => fault.Tampers(s, p)));
        Assert.InRange(targeted, 160, 240);
        var positions = Enumerable.Range(0, 100_000).Count(p => fault.Tampers(sessions.First(s => Enumerable.Range(0, 2000).Any(q => fault.Tampers(s, q))), p));
        Assert.InRange(positions, 800, 1200);
        Assert.Equal(fault.Tampers("session-1", 17), fault.Tampers("session-1", 17));
    }
}
