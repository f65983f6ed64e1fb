using InferenceMesh.Core;

namespace InferenceMesh.Onnx;

/// <summary>The small description file written next to an imported model.</summary>
/// <param name="Quantization">The lossy weight quantization chosen at import (<see cref="Quantization.QuantizationOptions.Describe"/>); null for exact weights.</param>
public sealed record ModelDescription(string Name, ModelConfig Config, string Source, string SourceSha256, string Tokenizer, string? Quantization = null);
