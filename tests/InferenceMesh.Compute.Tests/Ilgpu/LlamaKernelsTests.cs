using ILGPU;
using ILGPU.Runtime;
using InferenceMesh.Compute.Ilgpu;
using Xunit.Abstractions;
using static InferenceMesh.Compute.Tests.Ilgpu.ReferenceLlama;

namespace InferenceMesh.Compute.Tests.Ilgpu;

/// <summary>Each kernel against the plain C# reference, per backend, max abs diff ≤ 1e-4.</summary>
[Collection(IlgpuCollection.Name)]
public sealed class LlamaKernelsTests(IlgpuBackends backends, ITestOutputHelper output)
{
    private const float Tolerance = 1e-4f;

    private static MemoryBuffer1D<float, Stride1D.Dense> Upload(Accelerator a, float[] values) => a.Allocate1D(values);

    private void AssertClose(float[] expected, float[] actual, string what)
    {
        var diff = MaxAbsDiff(expected, actual);
        output.WriteLine($"{what}: max abs diff {diff:E2}");
        Assert.True(diff <= Tolerance, $"{what}: max abs diff {diff} > {Tolerance}");
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void MatMulMatchesReferenceForMatvecAndTiledShapes(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var a = device.Accelerator;
        var kernels = LlamaKernels.For(a);
        Assert.Same(kernels, LlamaKernels.For(a));
        var random = new Random(1);
        foreach (var (rows, inDim, outDim) in new[] { (1, 37, 29), (3, 64, 48), (7, 33, 65), (18, 40, 17), (1, 5, 1) })
        {
            var x = ReferenceLlama.Random(random, rows * inDim);
            var w = ReferenceLlama.Random(random, inDim * outDim, 0.2f);
            var expected = ReferenceLlama.MatMul(x, w, rows, inDim, outDim);
            using var xb = Upload(a, x);
            using var wb = Upload(a, w);
            using var yb = a.Allocate1D<float>(rows * outDim);
            kernels.MatVec(xb.View, wb.View, yb.View, rows, inDim, outDim);
            a.Synchronize();
            AssertClose(expected, yb.GetAsArray1D(), $"matvec {rows}x{inDim}x{outDim}");
            yb.MemSetToZero();
            kernels.MatMulTiled(xb.View, wb.View, yb.View, rows, inDim, outDim);
            a.Synchronize();
            AssertClose(expected, yb.GetAsArray1D(), $"tiled {rows}x{inDim}x{outDim} (tile {kernels.Tile})");
            yb.MemSetToZero();
            kernels.MatMulPerElement(xb.View, wb.View, yb.View, rows, inDim, outDim);
            a.Synchronize();
            AssertClose(expected, yb.GetAsArray1D(), $"per-element {rows}x{inDim}x{outDim}");
            yb.MemSetToZero();
            kernels.MatMul(xb.View, wb.View, yb.View, rows, inDim, outDim);
            a.Synchronize();
            AssertClose(expected, yb.GetAsArray1D(), $"matmul {rows}x{inDim}x{outDim} (grouped: {kernels.PreferGrouped})");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void RmsNormMatchesReference(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var a = device.Accelerator;
        var random = new Random(2);
        foreach (var (rows, dim) in new[] { (1, 64), (3, 37), (2, 300) })
        {
            var x = ReferenceLlama.Random(random, rows * dim, 3f);
            var weight = ReferenceLlama.Random(random, dim);
            using var xb = Upload(a, x);
            using var wb = Upload(a, weight);
            using var yb = a.Allocate1D<float>(rows * dim);
            foreach (var grouped in new[] { true, false })
            {
                yb.MemSetToZero();
                LlamaKernels.For(a).RmsNorm(xb.View, wb.View, yb.View, rows, dim, 1e-5f, grouped);
                a.Synchronize();
                AssertClose(ReferenceLlama.RmsNorm(x, weight, rows, dim, 1e-5f), yb.GetAsArray1D(), $"rmsnorm {rows}x{dim} grouped {grouped}");
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void RopeRotatesAdjacentPairsAtEachPosition(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var a = device.Accelerator;
        var random = new Random(3);
        const int rows = 3, heads = 2, hs = 8, start = 5;
        var v = ReferenceLlama.Random(random, rows * heads * hs);
        var (cos, sin) = RopeTables(start + rows, hs);
        using var vb = Upload(a, v);
        using var cb = Upload(a, cos);
        using var sb = Upload(a, sin);
        LlamaKernels.For(a).Rope(vb.View, cb.View, sb.View, rows, heads, hs, start);
        a.Synchronize();
        AssertClose(ReferenceLlama.Rope(v, rows, heads, hs, start), vb.GetAsArray1D(), "rope");
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void SoftmaxMatchesReferenceFullAndCausalRows(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        Softmax_variant(device, grouped: true);
        Softmax_variant(device, grouped: false);
    }

    private void Softmax_variant(IlgpuDevice device, bool grouped)
    {
        var a = device.Accelerator;
        var random = new Random(4);
        const int rows = 6, stride = 23;
        var data = ReferenceLlama.Random(random, rows * stride, 20f);
        var full = (float[])data.Clone();
        for (var r = 0; r < rows; r++) Softmax(full.AsSpan(r * stride, stride));
        using var b = Upload(a, data);
        LlamaKernels.For(a).SoftmaxRows(b.View, rows, stride, stride, int.MaxValue, grouped);
        a.Synchronize();
        AssertClose(full, b.GetAsArray1D(), $"softmax full rows grouped {grouped}");

        // causal: 2 heads per step, base length 17: rows 0,1 → 17; rows 2,3 → 18; rows 4,5 → 19
        var causal = (float[])data.Clone();
        for (var r = 0; r < rows; r++)
        {
            var length = 17 + r / 2;
            Softmax(causal.AsSpan(r * stride, length));
            causal.AsSpan(r * stride + length, stride - length).Clear();
        }
        b.CopyFromCPU(data);
        LlamaKernels.For(a).SoftmaxRows(b.View, rows, stride, 17, 2, grouped);
        a.Synchronize();
        AssertClose(causal, b.GetAsArray1D(), $"softmax causal rows grouped {grouped}");
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void AttentionOverKvCacheMatchesReferenceForPrefillThenDecode(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        Attention_variant(device, grouped: true);
        Attention_variant(device, grouped: false);
    }

    private void Attention_variant(IlgpuDevice device, bool grouped)
    {
        var a = device.Accelerator;
        var kernels = LlamaKernels.For(a);
        var random = new Random(5);
        const int heads = 4, kvHeads = 2, hs = 8, capacity = 16;
        using var keyCache = a.Allocate1D<float>(kvHeads * capacity * hs);
        using var valueCache = a.Allocate1D<float>(kvHeads * capacity * hs);
        using var scores = a.Allocate1D<float>(8 * heads * capacity);
        var keys = new List<float[]>[kvHeads];
        var values = new List<float[]>[kvHeads];
        for (var h = 0; h < kvHeads; h++) { keys[h] = []; values[h] = []; }
        var start = 0;
        foreach (var rows in new[] { 5, 1, 1, 3 })
        {
            var q = ReferenceLlama.Random(random, rows * heads * hs);
            var k = ReferenceLlama.Random(random, rows * kvHeads * hs);
            var v = ReferenceLlama.Random(random, rows * kvHeads * hs);
            for (var r = 0; r < rows; r++)
                for (var h = 0; h < kvHeads; h++)
                {
                    keys[h].Add(k.AsSpan((r * kvHeads + h) * hs, hs).ToArray());
                    values[h].Add(v.AsSpan((r * kvHeads + h) * hs, hs).ToArray());
                }
            var expected = ReferenceLlama.Attention(q, keys.SelectMany(l => l.SelectMany(x => x)).ToArray(),
                values.SelectMany(l => l.SelectMany(x => x)).ToArray(), rows, heads, kvHeads, hs, start);
            using var qb = Upload(a, q);
            using var kb = Upload(a, k);
            using var vb = Upload(a, v);
            using var ob = a.Allocate1D<float>(rows * heads * hs);
            kernels.AppendKv(kb.View, vb.View, keyCache.View, valueCache.View, rows, kvHeads, hs, capacity, start);
            kernels.Attention(qb.View, keyCache.View, valueCache.View, scores.View, ob.View, rows, heads, kvHeads, hs, capacity, start, grouped: grouped);
            a.Synchronize();
            AssertClose(expected, ob.GetAsArray1D(), $"attention rows {rows} at {start} grouped {grouped}");
            start += rows;
        }
    }

    [SkippableTheory]
    [MemberData(nameof(IlgpuBackends.All), MemberType = typeof(IlgpuBackends))]
    public void SiluMulAndResidualAddMatchReference(IlgpuBackend backend)
    {
        var device = backends.Get(backend, output);
        var a = device.Accelerator;
        var random = new Random(6);
        const int n = 101;
        var gate = ReferenceLlama.Random(random, n, 30f);
        var up = ReferenceLlama.Random(random, n, 2f);
        using var gb = Upload(a, gate);
        using var ub = Upload(a, up);
        LlamaKernels.For(a).SiluMul(gb.View, ub.View, n);
        a.Synchronize();
        AssertClose(gate.Select((g, i) => Silu(g) * up[i]).ToArray(), gb.GetAsArray1D(), "silu ⊙ up");

        var x = ReferenceLlama.Random(random, n);
        var y = ReferenceLlama.Random(random, n);
        using var xb = Upload(a, x);
        using var yb = Upload(a, y);
        LlamaKernels.For(a).Add(xb.View, yb.View, n);
        a.Synchronize();
        AssertClose(x.Zip(y, (p, q) => p + q).ToArray(), xb.GetAsArray1D(), "residual add");
    }

    [Fact]
    public void KernelExpIsWithinAFewUlpOfMathExp()
    {
        var worst = 0.0;
        for (var x = -103f; x <= 88.7f; x += 0.01737f)
        {
            var expected = Math.Exp(x);
            var actual = KernelExp(x);
            if (expected < 1e-37) continue; // subnormal range: absolute error is what matters, checked below
            worst = Math.Max(worst, Math.Abs(actual - expected) / expected);
        }
        output.WriteLine($"worst relative error {worst:E2}");
        Assert.True(worst < 5e-7, $"relative error {worst}");
        Assert.Equal(0f, KernelExp(-200f));
        Assert.Equal(float.PositiveInfinity, KernelExp(100f));
        Assert.True(Math.Abs(KernelExp(-100f) - Math.Exp(-100)) < 1e-44);
        Assert.Equal(1f, KernelExp(0f));
    }

    private static float KernelExp(float x) =>
        (float)typeof(LlamaKernels).Assembly.GetType("InferenceMesh.Compute.Ilgpu.KernelMath")!
            .GetMethod("Exp")!.Invoke(null, [x])!;
}
