using InferenceMesh.Core;

namespace InferenceMesh.Onnx;

/// <summary>The small description file written next to an imported model.</summary>
public sealed record ModelDescription(string Name, ModelConfig Config, string Source, string SourceSha256, string Tokenizer);
