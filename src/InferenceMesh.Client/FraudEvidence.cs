using System.Text.Json.Serialization;
using InferenceMesh.Core;
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
    /// True when every commitment is signed by <see cref="Server"/>'s key for this model, session and blocks, the commitments
    /// cover the positions in order, and their hashes are those of the matching slices of <see cref="Input"/> and <see cref="Output"/>.
    /// </summary>
    public bool VerifySignatures()
    {
        if (!PeerId.TryParse(Server, out var peer) || peer!.TryGetEd25519PublicKey() is not { } key || Commitments.Count == 0) return false;
        var width = Input.Shape[^1];
        var position = 0;
        foreach (var c in Commitments)
        {
            if (c.StartPosition != position || c.BlockStart != Blocks.Start || c.Positions < 1) return false;
            if (!Libp2pKeys.VerifyEd25519(key, c.SignedBytes(ModelId, SessionId, Blocks.End), c.Signature)) return false;
            if (!Slice(Input, position, c.Positions, width).SequenceEqual(c.InputHash)) return false;
            if (!Slice(Output, position, c.Positions, width).SequenceEqual(c.OutputHash)) return false;
            position += c.Positions;
        }
        return position == Input.Shape[1] && position == Output.Shape[1];
    }

    /// <summary>
    /// Whether this evidence convicts <see cref="Server"/> in the eyes of whoever holds the blocks: the signatures verify
    /// (<see cref="VerifySignatures"/>) and re-running <see cref="Input"/> gives an output that differs from the signed
    /// <see cref="Output"/> by more than <paramref name="tolerance"/> somewhere. A forged report (a signature that is not the
    /// server's) or one whose evidence re-runs honestly is rejected, so a report alone can never get an honest server banned.
    /// </summary>
    /// <param name="rerun">Runs the blocks over <c>[1, positions, dim]</c> from position 0 on a fresh session (the caller's own stages).</param>
    /// <param name="tolerance">The honest tolerance, as in <see cref="MeshClientOptions.CheckTolerance"/>.</param>
    public bool Confirm(Func<TensorData, TensorData> rerun, double tolerance)
    {
        ArgumentNullException.ThrowIfNull(rerun);
        return VerifySignatures() && InferenceSession.Compare(Output, rerun(Input), tolerance).FirstBad is not null;
    }

    private static byte[] Slice(TensorData tensor, int position, int count, long width)
    {
        var bytes = width * sizeof(float);
        if ((position + count) * bytes > tensor.Bytes.Length) return [];
        return System.Security.Cryptography.SHA256.HashData(tensor.Bytes.Span.Slice((int)(position * bytes), (int)(count * bytes)));
    }
}
