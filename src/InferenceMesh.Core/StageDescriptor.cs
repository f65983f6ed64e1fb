namespace InferenceMesh.Core;

/// <summary>One standalone ONNX graph cut from the model.</summary>
/// <param name="ActivationInput">The residual-stream input (token ids for the head).</param>
/// <param name="ActivationOutput">The residual-stream output (logits for the tail).</param>
/// <param name="ContextInputs">Inputs every stage recomputes its side tensors from (positions, mask); never activations.</param>
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
    IReadOnlyList<StateBinding> State);
