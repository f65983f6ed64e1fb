using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import;

/// <summary>
/// Where <see cref="LlamaOnnxBuilder"/> reads weights from, a band of rows at a time, so a checkpoint larger than
/// memory can be converted tensor by tensor.
/// </summary>
public interface ILlamaWeightSource
{
    ModelConfig Config { get; }

    /// <summary>Whether the model has this tensor (biases, q/k norms and a separate classifier are optional).</summary>
    bool Has(LlamaTensor tensor);

    /// <summary>Reads rows [<paramref name="startRow"/>, +<paramref name="rowCount"/>) of <paramref name="tensor"/> of
    /// <paramref name="layer"/> (ignored for model-wide tensors) as float32 into <paramref name="destination"/>, row-major.</summary>
    void ReadRows(LlamaTensor tensor, int layer, int startRow, int rowCount, Span<float> destination);
}
