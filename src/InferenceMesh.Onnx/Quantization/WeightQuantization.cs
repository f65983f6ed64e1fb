namespace InferenceMesh.Onnx.Quantization;

/// <summary>How a model's projection matrices are stored. Anything but <see cref="None"/> is lossy and recorded in the manifest.</summary>
public enum WeightQuantization
{
    /// <summary>As imported (float32 or float16), exact.</summary>
    None,

    /// <summary>8-bit codes with a float32 scale and an 8-bit zero point per block (ONNX Runtime's <c>MatMulNBits</c>, bits 8).</summary>
    Int8,

    /// <summary>4-bit codes with a float32 scale and a 4-bit zero point per block (<c>MatMulNBits</c>, bits 4).</summary>
    Int4,
}
