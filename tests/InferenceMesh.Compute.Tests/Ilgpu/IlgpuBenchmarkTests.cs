using Google.Protobuf;
using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>
/// Smoke runs of the matrix-vector benchmark per backend (small sizes: the CPU accelerator is slow). On a GPU the
/// output line gives the achieved bandwidth against the card's peak; docs/ILGPU.md records measured numbers.
/// </summary>
[Collection(IlgpuCollection.Name)]
public sealed class IlgpuBenchmarkTests(IlgpuBackends backends, ITestOutputHelper output)
{
    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void MatVecBenchmarkReportsBandwidth(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var (inDim, outDim, iterations) = backend == IlgpuBackend.Cuda ? (4096, 4096, 200) : (128, 128, 5);
        var result = IlgpuBenchmarks.MatVec(device, inDim, outDim, iterations);
        output.WriteLine(result.ToString());
        Assert.True(result.GigabytesPerSecond > 0 && double.IsFinite(result.GigabytesPerSecond));
        Assert.Equal(backend == IlgpuBackend.Cuda, result.PeakGigabytesPerSecond is not null);
        var baseline = IlgpuBenchmarks.TensorPrimitivesMatVec(inDim, outDim, iterations);
        output.WriteLine(baseline.ToString());
        Assert.True(baseline.GigabytesPerSecond > 0);
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void StageDecodeBenchmarkRunsOnILGPUAndOnnxRuntime(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var stage = GraphSplitter.Split(IlgpuStageExecutorTests.SyntheticModel(out _), [new BlockRange(0, 4)]).Single(s => s.Descriptor.Kind == StageKind.Blocks);
        using var ilgpu = new IlgpuStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), device: device);
        using var ort = new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new OrtExecutorOptions(IntraOpThreads: 1));
        foreach (var result in new[]
        {
            IlgpuBenchmarks.StageDecode(ilgpu, $"ILGPU {device}", 32, prefill: 4, steps: 4),
            IlgpuBenchmarks.StageDecode(ort, "ONNX Runtime (1 thread)", 32, prefill: 4, steps: 4),
        })
        {
            output.WriteLine(result.ToString());
            Assert.True(result.TokensPerSecond > 0);
        }
        Assert.Equal(0, ilgpu.CachedLength("bench"));
        Assert.Equal(0, ilgpu.CacheBytesInUse);
    }
}
