using System.Text.Json.Serialization;

namespace InferenceMesh.Core;

/// <summary>The architecture numbers of a Llama-family decoder (Llama, Mistral, Qwen 2/3).</summary>
/// <param name="Dim">Width of the residual stream (hidden size).</param>
/// <param name="HiddenDim">Width of the SwiGLU feed-forward layer (intermediate size).</param>
/// <param name="MaxSequence">Positions one session may reach (the context).</param>
/// <param name="RopeTheta">Rotary base; pairs rotate by position × theta^(−2i/head size).</param>
/// <param name="HeadDim">Width of one attention head; null means <c>Dim / Heads</c>.</param>
/// <param name="AttentionBias">Query, key and value projections add a bias (Qwen 2).</param>
/// <param name="QkNorm">Queries and keys pass a per-head RMSNorm before rotation (Qwen 3).</param>
/// <param name="RopeScaling">How rotary frequencies are rescaled for long contexts; null for none.</param>
public sealed record ModelConfig(
    int Dim, int HiddenDim, int Layers, int Heads, int KvHeads, int Vocab, int MaxSequence, float NormEpsilon, float RopeTheta,
    int? HeadDim = null, bool AttentionBias = false, bool QkNorm = false, RopeScaling? RopeScaling = null)
{
    [JsonIgnore] public int HeadSize => HeadDim ?? Dim / Heads;
    [JsonIgnore] public int KvDim => HeadSize * KvHeads;

    /// <summary>Width of all query heads together (equal to <see cref="Dim"/> unless the head width is set apart).</summary>
    [JsonIgnore] public int QueryDim => HeadSize * Heads;

    /// <summary>
    /// The rotary inverse frequency of each pair i (one per half head): theta^(−2i/head size), then rescaled per
    /// <see cref="RopeScaling"/> (Llama 3's rule: long wavelengths slowed by the factor, short ones kept, the band
    /// between blended smoothly).
    /// </summary>
    public float[] RotaryInverseFrequencies()
    {
        var half = HeadSize / 2;
        var frequencies = new float[half];
        for (var i = 0; i < half; i++)
        {
            var frequency = 1.0 / Math.Pow(RopeTheta, 2.0 * i / HeadSize);
            if (RopeScaling is { } s)
            {
                var lowWavelength = s.OriginalMaxPositions / s.LowFrequencyFactor;
                var highWavelength = s.OriginalMaxPositions / s.HighFrequencyFactor;
                var wavelength = 2 * Math.PI / frequency;
                if (wavelength > lowWavelength)
                    frequency /= s.Factor;
                else if (wavelength >= highWavelength)
                {
                    var smooth = (s.OriginalMaxPositions / wavelength - s.LowFrequencyFactor) / (s.HighFrequencyFactor - s.LowFrequencyFactor);
                    frequency = (1 - smooth) * frequency / s.Factor + smooth * frequency;
                }
            }
            frequencies[i] = (float)frequency;
        }
        return frequencies;
    }
}
