using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

public sealed class ExecutorKindTests(ITestOutputHelper output)
{
    private static readonly IlgpuProbe WithGpu = new(["NVIDIA H100 80GB HBM3"], null);
    private static readonly IlgpuProbe WithoutGpu = new([], "no NVIDIA GPU found");

    [Theory]
    [InlineData("auto", ExecutorKind.Auto)]
    [InlineData("ORT", ExecutorKind.Ort)]
    [InlineData(" ilgpu ", ExecutorKind.Ilgpu)]
    public void ParsesTheOptionValues(string text, ExecutorKind expected) => Assert.Equal(expected, ExecutorKinds.Parse(text));

    [Fact]
    public void RefusesAnUnknownExecutor()
    {
        var e = Assert.Throws<MeshException>(() => ExecutorKinds.Parse("cuda"));
        Assert.Equal(MeshErrorCode.InvalidArgument, e.Code);
        Assert.Contains("auto, ort or ilgpu", e.Message);
    }

    [Fact]
    public void AutoTakesILGPUOnAGPUAndOnnxRuntimeOnACPU()
    {
        var gpu = ExecutorKinds.Resolve(ExecutorKind.Auto, WithGpu);
        Assert.Equal((ExecutorKind.Ilgpu, IlgpuBackend.Cuda), (gpu.Kind, gpu.Backend));
        Assert.Contains("H100", gpu.Reason);
        var cpu = ExecutorKinds.Resolve(ExecutorKind.Auto, WithoutGpu);
        Assert.Equal((ExecutorKind.Ort, (IlgpuBackend?)null), (cpu.Kind, cpu.Backend));
        Assert.Contains("no NVIDIA GPU found", cpu.Reason);
    }

    [Fact]
    public void ExplicitChoicesAreKept()
    {
        Assert.Equal(ExecutorKind.Ort, ExecutorKinds.Resolve(ExecutorKind.Ort, WithGpu).Kind);
        var ilgpuOnCpu = ExecutorKinds.Resolve(ExecutorKind.Ilgpu, WithoutGpu);
        Assert.Equal((ExecutorKind.Ilgpu, IlgpuBackend.Cpu), (ilgpuOnCpu.Kind, ilgpuOnCpu.Backend));
        Assert.Equal(IlgpuBackend.Cuda, ExecutorKinds.Resolve(ExecutorKind.Ilgpu, WithGpu).Backend);
    }

    [Fact]
    public void ResolutionOnThisMachineSaysWhatItFound()
    {
        var probe = IlgpuDevices.Probe();
        var choice = ExecutorKinds.Resolve(ExecutorKind.Auto);
        output.WriteLine($"CUDA devices: [{string.Join(", ", probe.CudaDevices)}]; {probe.CudaUnavailableReason}");
        output.WriteLine(choice.Reason);
        Assert.Equal(probe.HasCuda ? ExecutorKind.Ilgpu : ExecutorKind.Ort, choice.Kind);
        Assert.Equal(probe.HasCuda ? IlgpuBackend.Cuda : IlgpuBackend.Cpu, IlgpuDevices.Preferred());
        if (!probe.HasCuda)
        {
            var e = Assert.Throws<MeshException>(() => IlgpuDevices.Open(IlgpuBackend.Cuda));
            Assert.Contains("no CUDA device", e.Message);
        }
    }
}
