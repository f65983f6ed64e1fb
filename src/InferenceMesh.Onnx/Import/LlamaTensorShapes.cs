using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Import;

/// <summary>The [rows, columns] of each <see cref="LlamaTensor"/> for a config; vectors are one row.</summary>
public static class LlamaTensorShapes
{
    public static (int Rows, int Columns) Of(ModelConfig c, LlamaTensor tensor) => tensor switch
    {
        LlamaTensor.Embedding or LlamaTensor.Classifier => (c.Vocab, c.Dim),
        LlamaTensor.AttentionNorm or LlamaTensor.FfnNorm or LlamaTensor.FinalNorm => (1, c.Dim),
        LlamaTensor.Query => (c.QueryDim, c.Dim),
        LlamaTensor.Key or LlamaTensor.Value => (c.KvDim, c.Dim),
        LlamaTensor.Output => (c.Dim, c.QueryDim),
        LlamaTensor.QueryBias => (1, c.QueryDim),
        LlamaTensor.KeyBias or LlamaTensor.ValueBias => (1, c.KvDim),
        LlamaTensor.QueryNorm or LlamaTensor.KeyNorm => (1, c.HeadSize),
        LlamaTensor.Gate or LlamaTensor.Up => (c.HiddenDim, c.Dim),
        LlamaTensor.Down => (c.Dim, c.HiddenDim),
        _ => throw new ArgumentOutOfRangeException(nameof(tensor), tensor, null),
    };

    /// <summary>Whether the tensor exists once per block (rather than once per model).</summary>
    public static bool PerLayer(LlamaTensor tensor) => tensor is not (LlamaTensor.Embedding or LlamaTensor.FinalNorm or LlamaTensor.Classifier);

    /// <summary>Reads a whole one-row tensor.</summary>
    public static float[] ReadVector(this ILlamaWeightSource source, LlamaTensor tensor, int layer)
    {
        var (rows, columns) = Of(source.Config, tensor);
        var values = new float[(long)rows * columns];
        source.ReadRows(tensor, layer, 0, rows, values);
        return values;
    }
}
