namespace InferenceMesh.Fuzz;

/// <summary>
/// Seeded byte mutations (bit flips, interesting values, inserts, deletes, truncation, splices, varint-size
/// bytes) for the in-process run without AFL: the same seed gives the same inputs, so a failure reproduces.
/// </summary>
public sealed class Mutator(int seed)
{
    private static readonly byte[] Interesting = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x2f, 0x10, 0x40];
    private readonly Random _random = new(seed);

    /// <summary>A mutation of <paramref name="input"/>, sometimes spliced with <paramref name="other"/>.</summary>
    public byte[] Mutate(byte[] input, byte[] other)
    {
        var data = new List<byte>(input);
        var rounds = 1 + _random.Next(4);
        for (var i = 0; i < rounds; i++)
        {
            var at = data.Count == 0 ? 0 : _random.Next(data.Count);
            switch (_random.Next(8))
            {
                case 0 when data.Count > 0: data[at] ^= (byte)(1 << _random.Next(8)); break;
                case 1 when data.Count > 0: data[at] = Interesting[_random.Next(Interesting.Length)]; break;
                case 2: data.Insert(at, (byte)_random.Next(256)); break;
                case 3 when data.Count > 0: data.RemoveRange(at, Math.Min(data.Count - at, 1 + _random.Next(8))); break;
                case 4 when data.Count > 0: data.RemoveRange(at, data.Count - at); break;
                case 5 when other.Length > 0:
                    var from = _random.Next(other.Length);
                    data.InsertRange(at, other.Skip(from).Take(1 + _random.Next(Math.Min(64, other.Length - from))));
                    break;
                case 6: data.InsertRange(at, [0xff, 0xff, 0xff, 0xff, 0x0f]); break;
                case 7 when data.Count >= 4:
                    var start = _random.Next(data.Count - 3);
                    var word = BitConverter.GetBytes(_random.Next(3) switch { 0 => int.MaxValue, 1 => -1, _ => _random.Next() });
                    for (var b = 0; b < 4; b++) data[start + b] = word[b];
                    break;
            }
        }
        return [.. data];
    }
}
