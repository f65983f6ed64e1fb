namespace InferenceMesh.Compute.Ilgpu;

/// <summary>Decode speed of one stage: the mean time of a one-position step after a prefill.</summary>
public sealed record StageDecodeMeasurement(string Executor, int Prefill, int Steps, double SecondsPerStep)
{
    public double TokensPerSecond => 1 / SecondsPerStep;

    public override string ToString() => $"{Executor}: {SecondsPerStep * 1e3:F2} ms per decode step after a {Prefill}-position prefill ({TokensPerSecond:F1} tokens/s)";
}
