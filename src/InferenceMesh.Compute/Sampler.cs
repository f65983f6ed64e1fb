using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// Picks the next token from logits as llama2.c does: argmax at temperature 0, otherwise softmax at the
/// temperature followed by nucleus (top-p) or plain multinomial sampling from a seeded xorshift generator,
/// so a seed reproduces a run exactly.
/// </summary>
public sealed class Sampler
{
    private readonly float _temperature;
    private readonly float _topP;
    private ulong _state;
    private (float Probability, int Index)[] _candidates = [];

    public Sampler(float temperature, float topP, ulong seed)
    {
        if (temperature < 0 || float.IsNaN(temperature))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"temperature {temperature} must be 0 or more");
        if (topP < 0 || topP > 1 || float.IsNaN(topP))
            throw new MeshException(MeshErrorCode.InvalidArgument, $"top-p {topP} must be between 0 and 1");
        _temperature = temperature;
        _topP = topP;
        _state = seed == 0 ? 1 : seed;
    }

    /// <summary>Chooses a token; <paramref name="logits"/> is overwritten with probabilities when sampling.</summary>
    public int Sample(Span<float> logits)
    {
        if (_temperature == 0) return ArgMax(logits);
        for (var i = 0; i < logits.Length; i++) logits[i] /= _temperature;
        Softmax(logits);
        var coin = RandomFloat();
        return _topP <= 0 || _topP >= 1 ? SampleMultinomial(logits, coin) : SampleTopP(logits, coin);
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        var best = 0;
        for (var i = 1; i < values.Length; i++)
            if (values[i] > values[best]) best = i;
        return best;
    }

    public static void Softmax(Span<float> values)
    {
        var max = values[0];
        foreach (var v in values) max = Math.Max(max, v);
        var sum = 0f;
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = MathF.Exp(values[i] - max);
            sum += values[i];
        }
        for (var i = 0; i < values.Length; i++) values[i] /= sum;
    }

    private static int SampleMultinomial(ReadOnlySpan<float> probabilities, float coin)
    {
        var cdf = 0f;
        for (var i = 0; i < probabilities.Length; i++)
        {
            cdf += probabilities[i];
            if (coin < cdf) return i;
        }
        return probabilities.Length - 1;
    }

    private int SampleTopP(ReadOnlySpan<float> probabilities, float coin)
    {
        if (_candidates.Length < probabilities.Length) _candidates = new (float, int)[probabilities.Length];
        // Tokens below this cannot be in the nucleus, so they are dropped before sorting.
        var cutoff = (1f - _topP) / (probabilities.Length - 1);
        var count = 0;
        for (var i = 0; i < probabilities.Length; i++)
            if (probabilities[i] >= cutoff) _candidates[count++] = (probabilities[i], i);
        var nucleus = _candidates.AsSpan(0, count);
        nucleus.Sort((a, b) => b.Probability.CompareTo(a.Probability));
        var cumulative = 0f;
        var last = count - 1;
        for (var i = 0; i < count; i++)
        {
            cumulative += nucleus[i].Probability;
            if (cumulative > _topP)
            {
                last = i;
                break;
            }
        }
        var r = coin * cumulative;
        var cdf = 0f;
        for (var i = 0; i <= last; i++)
        {
            cdf += nucleus[i].Probability;
            if (r < cdf) return nucleus[i].Index;
        }
        return nucleus[last].Index;
    }

    private float RandomFloat()
    {
        _state ^= _state >> 12;
        _state ^= _state << 25;
        _state ^= _state >> 27;
        var u32 = (uint)((_state * 0x2545F4914F6CDD1DUL) >> 32);
        return (u32 >> 8) / 16777216f;
    }
}
