using System.Diagnostics;
using System.Numerics.Tensors;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using InferenceMesh.Core;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// Micro-benchmarks of the matrix-vector product, the kernel that bounds decode speed: on an ILGPU device (the achieved
/// memory bandwidth, against the card's peak on CUDA), and the same product with <see cref="TensorPrimitives"/> on the CPU.
/// </summary>
public static class IlgpuBenchmarks
{
    /// <summary>Times <paramref name="iterations"/> launches of the matrix-vector kernel after one warm-up launch.</summary>
    public static MatVecMeasurement MatVec(IlgpuDevice device, int inDim, int outDim, int iterations = 100, bool? grouped = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        var accelerator = device.Accelerator;
        var kernels = LlamaKernels.For(accelerator);
        var random = new Random(1);
        var w = new float[(long)inDim * outDim];
        for (var i = 0; i < w.Length; i++) w[i] = (float)random.NextDouble() - 0.5f;
        var x = new float[inDim];
        for (var i = 0; i < x.Length; i++) x[i] = (float)random.NextDouble() - 0.5f;
        using var wb = accelerator.Allocate1D(w);
        using var xb = accelerator.Allocate1D(x);
        using var yb = accelerator.Allocate1D<float>(outDim);
        kernels.MatMul(xb.View, wb.View, yb.View, 1, inDim, outDim, grouped);
        accelerator.Synchronize();
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < iterations; i++)
            kernels.MatMul(xb.View, wb.View, yb.View, 1, inDim, outDim, grouped);
        accelerator.Synchronize();
        return Measurement(device.ToString(), inDim, outDim, iterations, watch.Elapsed.TotalSeconds, PeakBandwidth(accelerator));
    }

    /// <summary>The same product on the CPU with <see cref="TensorPrimitives.MultiplyAdd(ReadOnlySpan{float}, float, ReadOnlySpan{float}, Span{float})"/>, one row of W per input.</summary>
    public static MatVecMeasurement TensorPrimitivesMatVec(int inDim, int outDim, int iterations = 100)
    {
        var random = new Random(1);
        var w = new float[(long)inDim * outDim];
        for (var i = 0; i < w.Length; i++) w[i] = (float)random.NextDouble() - 0.5f;
        var x = new float[inDim];
        for (var i = 0; i < x.Length; i++) x[i] = (float)random.NextDouble() - 0.5f;
        var y = new float[outDim];
        void Run()
        {
            Array.Clear(y);
            for (var k = 0; k < inDim; k++)
                TensorPrimitives.MultiplyAdd(w.AsSpan(k * outDim, outDim), x[k], y, y);
        }
        Run();
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < iterations; i++) Run();
        return Measurement("TensorPrimitives (1 thread)", inDim, outDim, iterations, watch.Elapsed.TotalSeconds, null);
    }

    /// <summary>
    /// Times <paramref name="steps"/> one-position steps of any block-stage executor after a <paramref name="prefill"/>-position prefill
    /// of seeded random activations of width <paramref name="dim"/>, in a fresh session that is closed afterwards.
    /// </summary>
    public static StageDecodeMeasurement StageDecode(IStageExecutor executor, string name, int dim, int prefill = 8, int steps = 16)
    {
        ArgumentNullException.ThrowIfNull(executor);
        var random = new Random(1);
        TensorData Activation(int rows)
        {
            var values = new float[rows * dim];
            for (var i = 0; i < values.Length; i++) values[i] = (float)random.NextDouble() * 2 - 1;
            return TensorData.FromFloats([1, rows, dim], values);
        }
        var session = $"bench-{Guid.NewGuid():N}";
        try
        {
            executor.Run(session, Activation(prefill), 0);
            var inputs = Enumerable.Range(0, steps).Select(_ => Activation(1)).ToList();
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < steps; i++)
                executor.Run(session, inputs[i], prefill + i);
            return new StageDecodeMeasurement(name, prefill, steps, watch.Elapsed.TotalSeconds / steps);
        }
        finally
        {
            executor.CloseSession(session);
        }
    }

    /// <summary>Theoretical memory bandwidth in GB/s of a CUDA accelerator (2 × memory clock × bus width); null for other accelerators.</summary>
    public static double? PeakBandwidth(Accelerator accelerator) =>
        accelerator is CudaAccelerator cuda && cuda.MemoryClockRate > 0 && cuda.MemoryBusWidth > 0
            ? 2.0 * cuda.MemoryClockRate * 1e3 * (cuda.MemoryBusWidth / 8.0) / 1e9
            : null;

    private static MatVecMeasurement Measurement(string device, int inDim, int outDim, int iterations, double seconds, double? peak)
    {
        var perCall = seconds / iterations;
        var bytes = 4.0 * ((double)inDim * outDim + inDim + outDim);
        var flops = 2.0 * inDim * outDim;
        return new MatVecMeasurement(device, inDim, outDim, iterations, perCall, bytes / perCall / 1e9, flops / perCall / 1e9, peak);
    }
}
