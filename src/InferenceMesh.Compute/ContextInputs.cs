namespace InferenceMesh.Compute;

/// <summary>Names of the context inputs, following Hugging Face Optimum's decoder exports.</summary>
public static class ContextInputs
{
    public const string PositionIds = "position_ids";
    public const string AttentionMask = "attention_mask";
}
