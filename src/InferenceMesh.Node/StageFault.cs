using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>
/// A lie a test node tells, to measure that verification catches it: noise on the output, a skipped block, or
/// emulated other weights, on a fraction of positions and of sessions. Refused unless the environment variable
/// <see cref="AllowVariable"/> is <c>1</c>, so no production node can be started lying by mistake.
/// </summary>
/// <remarks>
/// Which positions and sessions are tampered with is a pure function of the session id, the position and
/// <see cref="Seed"/>, so a replay of the same session lies the same way. Weights faults are emulated on the
/// activations each stage produces (see <see cref="FaultKind"/>); they keep the stages' KV caches honest.
/// </remarks>
/// <param name="Kind">What the lie is.</param>
/// <param name="Amount">Noise: the standard deviation added to every element; skip-block: the block index; otherwise unused.</param>
/// <param name="Rate">Probability that a position of a targeted session is tampered with (1: every position).</param>
/// <param name="Sessions">Probability that a session is targeted at all (1: every session).</param>
/// <param name="Seed">Mixes into every choice, so two faulty nodes lie differently.</param>
public sealed record StageFault(StageFault.FaultKind Kind, double Amount = 0, double Rate = 1, double Sessions = 1, int Seed = 0)
{
    /// <summary>The environment variable that must be <c>1</c> for a fault to be accepted.</summary>
    public const string AllowVariable = "INFERENCEMESH_ALLOW_FAULTS";

    /// <summary>Kinds of lie.</summary>
    public enum FaultKind
    {
        /// <summary>Gaussian noise of standard deviation <see cref="Amount"/> on the span's output.</summary>
        Noise,

        /// <summary>Block <see cref="Amount"/> is run (its cache kept) but its output replaced by its input.</summary>
        SkipBlock,

        /// <summary>Every stage's output rounded through fp16, as a node running its weights in fp16 would drift.</summary>
        WeightsFp16,

        /// <summary>Every stage's output quantised to int8 per position (absmax scale), as int8 weights would drift.</summary>
        WeightsInt8,

        /// <summary>Every stage's residual update permuted over channels: a different function of the same size, as another checkpoint would give.</summary>
        WeightsOtherSeed,
    }

    /// <summary>
    /// Parses <c>noise=σ</c>, <c>skip-block=i</c>, <c>weights=fp16|int8|other-seed</c>, optionally with <c>rate=p</c>,
    /// <c>sessions=p</c> and <c>seed=n</c>, given as separate items or joined by commas.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for an unknown or malformed item, or none naming the lie.</exception>
    public static StageFault Parse(IEnumerable<string> items)
    {
        FaultKind? kind = null;
        double amount = 0, rate = 1, sessions = 1;
        var seed = 0;
        foreach (var item in items.SelectMany(i => i.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var equals = item.IndexOf('=');
            if (equals <= 0) throw Bad($"'{item}' is not name=value");
            var (name, value) = (item[..equals], item[(equals + 1)..]);
            switch (name)
            {
                case "noise": (kind, amount) = (FaultKind.Noise, Number(value, 0, 1e6, item)); break;
                case "skip-block": (kind, amount) = (FaultKind.SkipBlock, (int)Number(value, 0, 1 << 20, item)); break;
                case "weights":
                    kind = value switch
                    {
                        "fp16" => FaultKind.WeightsFp16,
                        "int8" => FaultKind.WeightsInt8,
                        "other-seed" => FaultKind.WeightsOtherSeed,
                        _ => throw Bad($"'{item}': weights must be fp16, int8 or other-seed"),
                    };
                    break;
                case "rate": rate = Number(value, 0, 1, item); break;
                case "sessions": sessions = Number(value, 0, 1, item); break;
                case "seed": seed = (int)Number(value, int.MinValue, int.MaxValue, item); break;
                default: throw Bad($"unknown fault '{name}'; expected noise, skip-block, weights, rate, sessions or seed");
            }
        }
        return new StageFault(kind ?? throw Bad("a fault needs noise=σ, skip-block=i or weights=fp16|int8|other-seed"), amount, rate, sessions, seed);
    }

    /// <summary>Throws unless <see cref="AllowVariable"/> is <c>1</c> in this process's environment.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> naming the variable.</exception>
    public void EnsureAllowed()
    {
        if (Environment.GetEnvironmentVariable(AllowVariable) != "1")
            throw Bad($"fault injection ({this}) is for tests only and needs {AllowVariable}=1 in the environment");
    }

    /// <summary>Whether the position at <paramref name="position"/> of <paramref name="sessionId"/> is tampered with.</summary>
    public bool Tampers(string sessionId, int position) =>
        Unit(sessionId, -1) < Sessions && Unit(sessionId, position) < Rate;

    /// <summary>
    /// Runs one step through <paramref name="stages"/>, lying at the chosen positions. Like the honest loop it owns its
    /// intermediate tensors (returned to the pool here) and returns a tensor the caller disposes; <paramref name="input"/> stays the caller's.
    /// </summary>
    internal TensorData Run(IReadOnlyList<Compute.IStageExecutor> stages, string sessionId, TensorData input, int startPosition)
    {
        var positions = (int)input.Shape[1];
        var tampered = new bool[positions];
        var any = false;
        for (var p = 0; p < positions; p++) any |= tampered[p] = Tampers(sessionId, startPosition + p);
        var output = input;
        foreach (var stage in stages)
        {
            var stageInput = output;
            var produced = stage.Run(sessionId, stageInput, startPosition);
            output = any ? Tamper(produced, stageInput, stage.Stage.Blocks!.Value, tampered) : produced;
            if (!ReferenceEquals(produced, output) && !ReferenceEquals(produced, stageInput)) produced.Dispose();
            if (!ReferenceEquals(stageInput, input) && !ReferenceEquals(stageInput, output)) stageInput.Dispose();
        }
        if (any && Kind == FaultKind.Noise)
        {
            var noisy = PerPosition(output, tampered, (row, p) =>
            {
                var random = new Random((int)(Unit(sessionId, -2 - (startPosition + p)) * int.MaxValue));
                for (var i = 0; i < row.Length; i++) row[i] += (float)(Amount * Gaussian(random));
            });
            if (!ReferenceEquals(output, input)) output.Dispose();
            output = noisy;
        }
        return output;
    }

    /// <summary>The stage's output with this fault applied at the tampered positions: a new tensor, or <paramref name="output"/> itself when the fault does not touch this stage.</summary>
    private TensorData Tamper(TensorData output, TensorData stageInput, BlockRange blocks, bool[] tampered)
    {
        float[]? inputs = null;
        Span<float> InputRow(int position, int width) => (inputs ??= stageInput.ToFloatArray()).AsSpan(position * width, width);
        return Kind switch
        {
            FaultKind.SkipBlock when Amount >= blocks.Start && Amount < blocks.End => PerPosition(output, tampered, (row, p) => InputRow(p, row.Length).CopyTo(row)),
            FaultKind.WeightsFp16 => PerPosition(output, tampered, (row, _) => { for (var i = 0; i < row.Length; i++) row[i] = (float)(Half)row[i]; }),
            FaultKind.WeightsInt8 => PerPosition(output, tampered, QuantiseInt8),
            FaultKind.WeightsOtherSeed => PerPosition(output, tampered, (row, p) => PermuteUpdate(row, InputRow(p, row.Length), blocks.Start)),
            _ => output,
        };
    }

    /// <summary>A copy of <paramref name="tensor"/> (float32 or float16, kept as it is) with <paramref name="change"/> applied to the tampered positions' rows.</summary>
    private static TensorData PerPosition(TensorData tensor, bool[] tampered, RowAction change)
    {
        var values = tensor.ToFloatArray();
        var width = values.Length / tampered.Length;
        for (var p = 0; p < tampered.Length; p++)
            if (tampered[p]) change(values.AsSpan(p * width, width), p);
        if (tensor.Type != DType.Float16) return TensorData.FromFloats(tensor.Shape, values);
        var halves = new Half[values.Length];
        for (var i = 0; i < values.Length; i++) halves[i] = (Half)values[i];
        return new TensorData(DType.Float16, tensor.Shape, MemoryMarshal.AsBytes(halves.AsSpan()).ToArray());
    }

    private delegate void RowAction(Span<float> row, int position);

    private static void QuantiseInt8(Span<float> row, int position)
    {
        var max = 0f;
        foreach (var v in row) max = Math.Max(max, Math.Abs(v));
        if (max == 0) return;
        var scale = max / 127f;
        for (var i = 0; i < row.Length; i++) row[i] = MathF.Round(row[i] / scale) * scale;
    }

    private void PermuteUpdate(Span<float> row, ReadOnlySpan<float> input, int block)
    {
        var update = new float[row.Length];
        for (var i = 0; i < row.Length; i++) update[i] = row[i] - input[i];
        var order = Enumerable.Range(0, row.Length).ToArray();
        new Random(unchecked(Seed * 1_000_003 + block)).Shuffle(order);
        for (var i = 0; i < row.Length; i++) row[i] = input[i] + update[order[i]];
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());

    /// <summary>A uniform number in [0, 1) from the session, a position (-1: the session itself; below that, noise seeds) and the seed; stable across processes.</summary>
    private double Unit(string sessionId, int position)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes($"{Seed}/{sessionId}/{position.ToString(CultureInfo.InvariantCulture)}"), hash);
        return (BinaryPrimitives.ReadUInt64LittleEndian(hash) >> 11) * (1.0 / (1UL << 53));
    }

    private static double Number(string text, double min, double max, string item) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : throw Bad($"'{item}': {text} is not a number in {min}..{max}");

    private static MeshException Bad(string why) => new(MeshErrorCode.InvalidArgument, why);
}
