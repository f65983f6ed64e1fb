using ILGPU;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// Scalar math usable inside kernels on every ILGPU backend. ILGPU's PTX backend has no native
/// <c>exp</c> (only <c>ex2.approx</c>, or CUDA's libdevice, which needs the CUDA toolkit at run time),
/// so <see cref="Exp"/> is written out here: Cody–Waite range reduction and a degree-7 polynomial,
/// accurate to about 2 ulp, and the same bits on CPU and GPU.
/// </summary>
internal static class KernelMath
{
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f;
    private const float Ln2Lo = -2.12194440e-4f;

    /// <summary>e^x for float x; +∞ above ~88.72, 0 below ~−103.97.</summary>
    public static float Exp(float x)
    {
        if (x > 88.7228391f) return float.PositiveInfinity;
        if (x < -103.972084f) return 0f;
        var kf = MathF.Floor(x * Log2E + 0.5f);
        var r = x - kf * Ln2Hi;
        r -= kf * Ln2Lo;
        // e^r for |r| <= ln2/2: Taylor to r^7 (truncation error below 1e-8 relative).
        var p = 1f / 5040f;
        p = p * r + 1f / 720f;
        p = p * r + 1f / 120f;
        p = p * r + 1f / 24f;
        p = p * r + 1f / 6f;
        p = p * r + 0.5f;
        p = p * r + 1f;
        p = p * r + 1f;
        var k = (int)kf;
        if (k > 127)
        {
            p *= 2f;
            k -= 1;
        }
        else if (k < -126)
        {
            p *= 5.96046448e-8f; // 2^-24: keeps the exponent field normal; the product rounds into a subnormal
            k += 24;
        }
        return p * Interop.IntAsFloat((uint)(k + 127) << 23);
    }

    /// <summary>The logistic function 1 / (1 + e^−x).</summary>
    public static float Sigmoid(float x) => 1f / (1f + Exp(-x));
}
