namespace InferenceMesh.Core;

/// <summary>One standalone ONNX graph cut from the model.</summary>
/// <param name="ActivationInput">The residual-stream input (token ids for the head).</param>
/// <param name="ActivationOutput">The residual-stream output (logits for the tail).</param>
/// <param name="ContextInputs">Inputs every stage recomputes its side tensors from (positions, mask); never activations.</param>
/// <param name="DataFile">The stage's own ONNX external-data file (weights kept outside the protobuf), beside <paramref name="File"/>; null when the weights are inline.</param>
/// <param name="DataSha256">sha256 (hex) of <paramref name="DataFile"/>.</param>
public sealed record StageDescriptor(
    StageKind Kind,
    BlockRange? Blocks,
    string File,
    string Sha256,
    string ActivationInput,
    string ActivationOutput,
    IReadOnlyList<TensorInfo> Inputs,
    IReadOnlyList<TensorInfo> Outputs,
    IReadOnlyList<string> ContextInputs,
    IReadOnlyList<StateBinding> State,
    string? DataFile = null,
    string? DataSha256 = null);
