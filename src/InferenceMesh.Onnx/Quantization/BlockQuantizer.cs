namespace InferenceMesh.Onnx.Quantization;

/// <summary>
/// Asymmetric block-wise quantization of one weight column (all K inputs of one output) into <c>MatMulNBits</c>'s layout:
/// per block of <c>blockSize</c> weights a float32 scale and a zero point, codes packed low bits first along K, and
/// for 4 bits two zero points per byte. A weight is read back as <c>(code − zeroPoint) · scale</c>; the range always
/// includes 0, so a zero weight (and the padding past K) is exact.
/// </summary>
public static class BlockQuantizer
{
    /// <summary>Blocks per column: ceil(K / blockSize).</summary>
    public static int Blocks(int k, int blockSize) => (k + blockSize - 1) / blockSize;

    /// <summary>Bytes of packed codes per block.</summary>
    public static int BlobBytes(int blockSize, int bits) => blockSize * bits / 8;

    /// <summary>Bytes of packed zero points per column.</summary>
    public static int ZeroPointBytes(int k, int blockSize, int bits) => (Blocks(k, blockSize) * bits + 7) / 8;

    /// <summary>Quantizes <paramref name="column"/> (K weights) into codes, scales and zero points.</summary>
    /// <param name="codes"><see cref="Blocks"/> × <see cref="BlobBytes"/> bytes.</param>
    /// <param name="scales"><see cref="Blocks"/> floats.</param>
    /// <param name="zeroPoints"><see cref="ZeroPointBytes"/> bytes.</param>
    public static void QuantizeColumn(ReadOnlySpan<float> column, int bits, int blockSize, Span<byte> codes, Span<float> scales, Span<byte> zeroPoints)
    {
        var maxCode = (1 << bits) - 1;
        var blob = BlobBytes(blockSize, bits);
        codes.Clear();
        zeroPoints.Clear();
        for (var b = 0; b < scales.Length; b++)
        {
            var start = b * blockSize;
            var block = column.Slice(start, Math.Min(blockSize, column.Length - start));
            float min = 0, max = 0;
            foreach (var w in block)
            {
                min = MathF.Min(min, w);
                max = MathF.Max(max, w);
            }
            var scale = (max - min) / maxCode;
            if (scale == 0) scale = 1;
            var zeroPoint = (int)Math.Clamp(MathF.Round(-min / scale), 0, maxCode);
            scales[b] = scale;
            var inverse = 1 / scale;
            var blockCodes = codes.Slice(b * blob, blob);
            for (var i = 0; i < blockSize; i++)
            {
                var code = i < block.Length ? Math.Clamp((int)MathF.Round(block[i] * inverse) + zeroPoint, 0, maxCode) : zeroPoint;
                if (bits == 8) blockCodes[i] = (byte)code;
                else blockCodes[i / 2] |= (byte)(code << (i % 2 * 4));
            }
            if (bits == 8) zeroPoints[b] = (byte)zeroPoint;
            else zeroPoints[b / 2] |= (byte)(zeroPoint << (b % 2 * 4));
        }
    }

    /// <summary>The weights <see cref="QuantizeColumn"/>'s output stands for (K of them), as <c>MatMulNBits</c> computes them.</summary>
    public static float[] DequantizeColumn(int k, int bits, int blockSize, ReadOnlySpan<byte> codes, ReadOnlySpan<float> scales, ReadOnlySpan<byte> zeroPoints)
    {
        var values = new float[k];
        var blob = BlobBytes(blockSize, bits);
        for (var i = 0; i < k; i++)
        {
            var b = i / blockSize;
            var within = i % blockSize;
            int code, zeroPoint;
            if (bits == 8)
            {
                code = codes[b * blob + within];
                zeroPoint = zeroPoints[b];
            }
            else
            {
                code = codes[b * blob + within / 2] >> (within % 2 * 4) & 0xF;
                zeroPoint = zeroPoints[b / 2] >> (b % 2 * 4) & 0xF;
            }
            values[i] = (code - zeroPoint) * scales[b];
        }
        return values;
    }
}
