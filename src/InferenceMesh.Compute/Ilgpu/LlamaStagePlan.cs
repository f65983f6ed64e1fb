namespace InferenceMesh.Compute.Ilgpu;

/// <summary>A block-range stage as the ILGPU executor runs it: the architecture numbers, the rotary frequencies and each block in order.</summary>
/// <param name="InverseFrequencies">Rotary inverse frequencies, <c>headSize/2</c> of them, as the graph holds them.</param>
public sealed record LlamaStagePlan(int Dim, int Heads, int KvHeads, int HeadSize, int HiddenDim, float[] InverseFrequencies, IReadOnlyList<LlamaBlockPlan> Blocks)
{
    public int KvDim => KvHeads * HeadSize;
}
