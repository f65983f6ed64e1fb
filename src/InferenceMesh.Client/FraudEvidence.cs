using System.Text.Json.Serialization;
using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>
/// What convicts a server: its own signed commitments for a session, the inputs and outputs they hash to, and the
/// validators' verdicts. Anyone holding the blocks can re-run <see cref="Input"/> and compare with <see cref="Output"/>;
/// <see cref="VerifySignatures"/> proves the server said it. JSON carries the check alone: the tensors are megabytes.
/// </summary>
/// <param name="Server">The convicted server.</param>
/// <param name="ModelId">The model the commitments are signed for.</param>
/// <param name="SessionId">The server's session id the commitments are signed for.</param>
/// <param name="Blocks">The blocks it ran.</param>
/// <param name="Commitments">Its commitments, in position order, covering positions 0 to the check's end.</param>
/// <param name="Input">Every input it was sent, in position order (<c>[1, positions, dim]</c>).</param>
/// <param name="Output">Every output it returned, in position order.</param>
/// <param name="Check">The check that convicted it.</param>
public sealed record FraudEvidence(string Server, string ModelId, string SessionId, BlockRange Blocks, [property: JsonIgnore] IReadOnlyList<StepCommitment> Commitments,
    [property: JsonIgnore] TensorData Input, [property: JsonIgnore] TensorData Output, CheckRecord Check)
{
    /// <summary>
    /// Position of <see cref="Output"/>'s first row: 0 when it holds every output, else the start of the step it was cut to
    /// (<see cref="Trimmed"/>). <see cref="Input"/> always starts at position 0: a re-run needs the whole history.
    /// </summary>
    public int OutputStart { get; init; }

    /// <summary>
    /// True when every commitment is signed by <see cref="Server"/>'s key for this model, session and blocks, the commitments
    /// cover the positions of <see cref="Input"/> in order and hash its slices, and those from <see cref="OutputStart"/> on
    /// hash the matching slices of <see cref="Output"/>.
    /// </summary>
    public bool VerifySignatures()
    {
        if (!PeerId.TryParse(Server, out var peer) || peer!.TryGetEd25519PublicKey() is not { } key || Commitments.Count == 0) return false;
        if (Input.Type is not (DType.Float32 or DType.Float16) || Output.Type != Input.Type || Input.Shape.Length != 3 || Output.Shape.Length != 3 || Input.Shape[^1] != Output.Shape[^1]) return false;
        var width = Input.Shape[^1];
        var position = 0;
        foreach (var c in Commitments)
        {
            if (c.StartPosition != position || c.BlockStart != Blocks.Start || c.Positions < 1) return false;
            if (!Libp2pKeys.VerifyEd25519(key, c.SignedBytes(ModelId, SessionId, Blocks.End), c.Signature)) return false;
            if (!Slice(Input, position, c.Positions, width).SequenceEqual(c.InputHash)) return false;
            if (position >= OutputStart && !Slice(Output, position - OutputStart, c.Positions, width).SequenceEqual(c.OutputHash)) return false;
            if (position < OutputStart && position + c.Positions > OutputStart) return false;
            position += c.Positions;
        }
        return position == Input.Shape[1] && position - OutputStart == Output.Shape[1];
    }

    /// <summary>
    /// The least evidence that still convicts at <paramref name="firstBadPosition"/>: the inputs up to the end of the step that
    /// holds it, that step's outputs alone, and the commitments up to it. What a fraud report publishes: a re-run needs every
    /// earlier input, but only the wrong output.
    /// </summary>
    public FraudEvidence Trimmed(int firstBadPosition)
    {
        var bad = Commitments.FirstOrDefault(c => c.StartPosition <= firstBadPosition && firstBadPosition < c.StartPosition + c.Positions);
        if (bad is null || bad.StartPosition < OutputStart) return this;
        var end = bad.StartPosition + bad.Positions;
        return this with
        {
            Commitments = [.. Commitments.TakeWhile(c => c.StartPosition < end)],
            Input = Rows(Input, 0, end),
            Output = Rows(Output, bad.StartPosition - OutputStart, bad.Positions),
            OutputStart = bad.StartPosition,
        };
    }

    /// <summary>The evidence as bytes for a fraud report: server, model, session, blocks, commitments and both tensors (the check's record stays local).</summary>
    public byte[] Encode()
    {
        var w = new ProtoWriter();
        w.WriteString(1, Server);
        w.WriteString(2, ModelId);
        w.WriteString(3, SessionId);
        w.WriteVarint(4, (ulong)Blocks.Start);
        w.WriteVarint(5, (ulong)Blocks.End);
        w.WriteVarint(6, (ulong)OutputStart);
        foreach (var c in Commitments)
        {
            var cw = new ProtoWriter();
            cw.WriteVarint(1, (ulong)c.BlockStart);
            cw.WriteVarint(2, (ulong)c.StartPosition);
            cw.WriteVarint(3, (ulong)c.Positions);
            cw.WriteBytes(4, c.InputHash);
            cw.WriteBytes(5, c.OutputHash);
            cw.WriteBytes(6, c.Signature);
            w.WriteBytes(7, cw.WrittenSpan);
        }
        w.WriteBytes(8, EncodeTensor(Input));
        w.WriteBytes(9, EncodeTensor(Output));
        return w.ToArray();
    }

    /// <summary>Reads evidence published by <see cref="Encode"/>; <see cref="Check"/> names the report it came from (no verdict).</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the bytes are not such evidence.</exception>
    public static FraudEvidence Decode(ReadOnlySpan<byte> bytes, string reporter)
    {
        static Exception Bad(string why) => new MeshException(MeshErrorCode.InvalidArgument, $"fraud evidence: {why}");
        var r = new ProtoReader(bytes, Bad);
        string? server = null, model = null, session = null;
        ulong start = 0, end = 0, outputStart = 0;
        var commitments = new List<StepCommitment>();
        TensorData? input = null, output = null;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: server = r.ReadString(); break;
                case 2: model = r.ReadString(); break;
                case 3: session = r.ReadString(); break;
                case 4: start = r.ReadVarintField(); break;
                case 5: end = r.ReadVarintField(); break;
                case 6: outputStart = r.ReadVarintField(); break;
                case 7:
                    if (commitments.Count >= MaxCommitments) throw Bad($"more than {MaxCommitments} commitments");
                    commitments.Add(DecodeCommitment(r.ReadBytes(), Bad));
                    break;
                case 8: input = DecodeTensor(r.ReadBytes(), Bad); break;
                case 9: output = DecodeTensor(r.ReadBytes(), Bad); break;
                default: r.Skip(); break;
            }
        }
        if (server is null || model is null || session is null || input is null || output is null || commitments.Count == 0)
            throw Bad("the server, model, session, commitments or a tensor is missing");
        if (end <= start || end > int.MaxValue || outputStart > int.MaxValue) throw Bad($"blocks [{start}, {end}) or output start {outputStart} out of range");
        var blocks = new BlockRange((int)start, (int)end);
        return new FraudEvidence(server, model, session, blocks, commitments, input, output,
            new CheckRecord(server, blocks, (int)input.Shape[1], [reporter], [], null, CheckVerdict.Unresolved, TimeSpan.Zero)) { OutputStart = (int)outputStart };
    }

    /// <summary>Most commitments one piece of evidence may carry (one per step).</summary>
    public const int MaxCommitments = 65_536;

    private static StepCommitment DecodeCommitment(ReadOnlySpan<byte> bytes, Func<string, Exception> bad)
    {
        var r = new ProtoReader(bytes, bad);
        ulong blockStart = 0, start = 0, positions = 0;
        byte[] input = [], output = [], signature = [];
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: blockStart = r.ReadVarintField(); break;
                case 2: start = r.ReadVarintField(); break;
                case 3: positions = r.ReadVarintField(); break;
                case 4: input = r.ReadBytes().ToArray(); break;
                case 5: output = r.ReadBytes().ToArray(); break;
                case 6: signature = r.ReadBytes().ToArray(); break;
                default: r.Skip(); break;
            }
        }
        if (blockStart > int.MaxValue || start > int.MaxValue || positions is 0 or > int.MaxValue || input.Length != StepCommitment.HashLength
            || output.Length != StepCommitment.HashLength || signature.Length != StepCommitment.SignatureLength)
            throw bad("a commitment is malformed");
        return new StepCommitment((int)blockStart, (int)start, (int)positions, input, output, signature);
    }

    private static byte[] EncodeTensor(TensorData tensor)
    {
        var w = new ProtoWriter();
        w.WriteVarint(1, (ulong)tensor.Type);
        foreach (var d in tensor.Shape) w.WriteVarint(2, (ulong)d);
        w.WriteBytes(3, tensor.Bytes.Span);
        return w.ToArray();
    }

    private static TensorData DecodeTensor(ReadOnlySpan<byte> bytes, Func<string, Exception> bad)
    {
        var r = new ProtoReader(bytes, bad);
        ulong type = ulong.MaxValue;
        var shape = new List<long>();
        byte[] data = [];
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: type = r.ReadVarintField(); break;
                case 2:
                    if (shape.Count >= 3) throw bad("a tensor has more than 3 dimensions");
                    shape.Add((long)Math.Min(r.ReadVarintField(), int.MaxValue));
                    break;
                case 3: data = r.ReadBytes().ToArray(); break;
                default: r.Skip(); break;
            }
        }
        if (type is not ((ulong)DType.Float32 or (ulong)DType.Float16) || shape.Count != 3 || shape[0] != 1
            || TensorData.ElementCount([.. shape]) * ((DType)type).ByteSize() != data.Length)
            throw bad($"a tensor is not float32/float16 [1, positions, width] matching its {data.Length} bytes");
        return new TensorData((DType)type, [.. shape], data);
    }

    private static TensorData Rows(TensorData tensor, int first, int count)
    {
        var rowBytes = (int)(tensor.Shape[^1] * tensor.Type.ByteSize());
        return new TensorData(tensor.Type, [1, count, tensor.Shape[^1]], tensor.Bytes.Span.Slice(first * rowBytes, count * rowBytes).ToArray());
    }

    /// <summary>
    /// Whether this evidence convicts <see cref="Server"/> in the eyes of whoever holds the blocks: the signatures verify
    /// (<see cref="VerifySignatures"/>) and re-running <see cref="Input"/> gives an output that differs from the signed
    /// <see cref="Output"/> by more than <paramref name="tolerance"/> somewhere. A forged report (a signature that is not the
    /// server's) or one whose evidence re-runs honestly is rejected, so a report alone can never get an honest server banned.
    /// </summary>
    /// <param name="rerun">Runs the blocks over <c>[1, positions, dim]</c> from position 0 on a fresh session (the caller's own stages).</param>
    /// <param name="tolerance">The honest tolerance for the output's type, as <see cref="MeshClientOptions.CheckToleranceFor"/> gives it.</param>
    public bool Confirm(Func<TensorData, TensorData> rerun, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(rerun);
        return VerifySignatures() && InferenceSession.Compare(Output, RerunOutputs(rerun(Input)), tolerance).FirstBad is not null;
    }

    /// <summary>The rows of a re-run of <see cref="Input"/> that <see cref="Output"/> holds.</summary>
    internal TensorData RerunOutputs(TensorData rerun) => OutputStart == 0 ? rerun : Rows(rerun, OutputStart, (int)rerun.Shape[1] - OutputStart);

    private static byte[] Slice(TensorData tensor, int position, int count, long width)
    {
        var bytes = width * tensor.Type.ByteSize();
        if ((position + count) * bytes > tensor.Bytes.Length) return [];
        return System.Security.Cryptography.SHA256.HashData(tensor.Bytes.Span.Slice((int)(position * bytes), (int)(count * bytes)));
    }
}
