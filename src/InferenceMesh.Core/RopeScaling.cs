namespace InferenceMesh.Core;

/// <summary>
/// Llama 3's rotary frequency scaling (Hugging Face <c>rope_scaling</c> with <c>rope_type: llama3</c>): wavelengths
/// longer than <c>OriginalMaxPositions / LowFrequencyFactor</c> are slowed by <see cref="Factor"/>, those shorter than
/// <c>OriginalMaxPositions / HighFrequencyFactor</c> are kept, and the band between is interpolated.
/// </summary>
/// <param name="OriginalMaxPositions">The context the model was pre-trained with, in positions.</param>
public sealed record RopeScaling(double Factor, double LowFrequencyFactor, double HighFrequencyFactor, int OriginalMaxPositions);
