using System.Text.Json.Serialization;

namespace InferenceMesh.Core;

/// <summary>The architecture numbers of a Llama-family decoder.</summary>
public sealed record ModelConfig(
    int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int Vocab, int MaxSequence, float NormEpsilon, float RopeTheta)
{
    [JsonIgnore] public int HeadSize => Dim / Heads;
    [JsonIgnore] public int KvDim => HeadSize * KvHeads;
}
