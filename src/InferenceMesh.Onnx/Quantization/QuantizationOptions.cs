using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Quantization;

/// <summary>
/// Block-wise weight quantization of every projection matrix (the q/k/v/o and FFN matrices, and a separate LM head),
/// run by ONNX Runtime's <c>com.microsoft.MatMulNBits</c>. The token embedding, norms and a classifier shared with the
/// embedding stay as imported; activations and the KV cache stay float32.
/// </summary>
/// <param name="Kind">Bits per weight.</param>
/// <param name="BlockSize">Weights along the input dimension K sharing one scale and zero point: a power of two, at least 16.
/// When K is not a multiple, the last block of each column is padded with zeros (<c>MatMulNBits</c> reads ceil(K / block) blocks).</param>
/// <param name="AccuracyLevel"><c>MatMulNBits</c>'s <c>accuracy_level</c>: 4 (the default) quantizes activations to int8 per block for integer
/// dot products; 0 leaves the choice to ONNX Runtime, which on CPU dequantizes to float — measured on the dim-1024 model (docs/BENCHMARKS.md),
/// 0 made int8 12× slower than fp32 and int4 1.75× slower than level 4.</param>
public sealed record QuantizationOptions(WeightQuantization Kind, int BlockSize = 32, int AccuracyLevel = 4)
{
    /// <summary>The number of bits <see cref="Kind"/> stores per weight.</summary>
    public int Bits => Kind switch
    {
        WeightQuantization.Int8 => 8,
        WeightQuantization.Int4 => 4,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"{Kind} has no bit width"),
    };

    /// <summary>What the manifest and <c>model.json</c> record, e.g. <c>int4 block 32 MatMulNBits accuracy 4</c>.</summary>
    public string Describe() => $"{Kind.ToString().ToLowerInvariant()} block {BlockSize} MatMulNBits accuracy {AccuracyLevel}";

    /// <summary>Parses the CLI's <c>int8</c> / <c>int4</c> / <c>none</c>; null for <c>none</c>.</summary>
    public static QuantizationOptions? Parse(string text, int blockSize = 32, int accuracyLevel = 4) => text.ToLowerInvariant() switch
    {
        "none" or "fp32" or "" => null,
        "int8" => new QuantizationOptions(WeightQuantization.Int8, blockSize, accuracyLevel),
        "int4" => new QuantizationOptions(WeightQuantization.Int4, blockSize, accuracyLevel),
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown quantization '{text}'; expected int8, int4 or none"),
    };

    /// <summary>Refuses a block size <c>MatMulNBits</c> cannot run and a kind without bits.</summary>
    public void Validate()
    {
        _ = Bits;
        if (BlockSize < 16 || (BlockSize & (BlockSize - 1)) != 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"quantization block size {BlockSize} must be a power of two of at least 16");
        if (AccuracyLevel is < 0 or > 4)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"accuracy level {AccuracyLevel} must be 0 to 4");
    }
}
