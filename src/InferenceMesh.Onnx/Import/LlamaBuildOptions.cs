using InferenceMesh.Core;
using InferenceMesh.Onnx.Quantization;

namespace InferenceMesh.Onnx.Import;

/// <summary>How <see cref="LlamaOnnxBuilder"/> stores weights.</summary>
/// <param name="External">Where matrices go when kept outside the protobuf (required past 2 GiB); null keeps every weight inline.</param>
/// <param name="WeightType"><see cref="DType.Float32"/>, or <see cref="DType.Float16"/> to store matrices and the embedding in half
/// precision (half the disk); the graph casts them to float32, so activations and the KV cache stay float32.</param>
/// <param name="Quantization">Block-quantized projection matrices (<c>com.microsoft.MatMulNBits</c>) instead of float ones; needs
/// <see cref="DType.Float32"/> <paramref name="WeightType"/>. Null: exact weights.</param>
public sealed record LlamaBuildOptions(ExternalDataWriter? External = null, DType WeightType = DType.Float32, QuantizationOptions? Quantization = null);
