using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>Verification of the route's servers: commitments on every step, replays on validators at window ends.</summary>
public sealed partial class InferenceSession
{
    private readonly VerificationTally _tally;
    private readonly Random _checkRandom;
    private int _lastWindowCheck;

    private bool Verifying => _client.Options.Verify != VerifyMode.Off;

    /// <summary>Positions whose outputs a check has confirmed on every hop of the route (strict mode hands out text only this far).</summary>
    public int CheckedPositions => _hops.Count == 0 ? 0 : _hops.Min(h => h.CheckedThrough);

    /// <summary>
    /// Checks every step's commitments against what arrived: the server's key signed them for this session, blocks and
    /// positions, and they hash the input the hop was given and the output it sent. Keeps both for the checks.
    /// </summary>
    private void VerifyCommitments(StepState state, int start, int positions)
    {
        for (var i = 0; i < _hops.Count; i++)
        {
            var hop = _hops[i];
            var input = state.InputAt(hop.Blocks.Start)!;
            var output = state.Outputs[hop.Blocks.End];
            var commitment = state.Commitments.GetValueOrDefault(hop.Blocks.End);
            Hold(input);
            Hold(output);
            hop.Keep(input, output, commitment);
            if (commitment is null)
            {
                if (_client.Options.Verify == VerifyMode.Strict) Convict(hop, "it sent a step result without a commitment");
                continue;
            }
            _tally.CommitmentsChecked++;
            var why = commitment.BlockStart != hop.Blocks.Start || commitment.StartPosition != start || commitment.Positions != positions
                ? "its commitment names other blocks or positions"
                : !commitment.OutputHash.AsSpan().SequenceEqual(StepCommitment.Hash(output)) ? "its commitment does not hash the output it sent"
                : !SignatureValid(hop, commitment) ? "its commitment is not signed by its key"
                : null;
            if (why is not null) Convict(hop, why);
            if (!commitment.InputHash.AsSpan().SequenceEqual(StepCommitment.Hash(input)))
            {
                // Chained, the input came from the hop before, which may have sent one thing here and another onwards:
                // the client cannot tell which of the two lied, so both leave its routes (and neither is reported).
                if (Mode == RouteMode.Chained && i > 0) Ban(_hops[i - 1].Server.Peer, $"blocks {_hops[i - 1].Blocks}: its output and the next hop's signed input differ");
                Convict(hop, "its commitment names an input other than the one it was sent");
            }
        }
    }

    private bool SignatureValid(Hop hop, StepCommitment commitment) =>
        hop.Server.Peer.TryGetEd25519PublicKey() is { } key
        && Libp2pKeys.VerifyEd25519(key, commitment.SignedBytes(_client.Manifest.ModelId, hop.SessionId, hop.Blocks.End), commitment.Signature);

    /// <summary>Bans the hop's server and ends the generation, which starts again without it.</summary>
    private void Convict(Hop hop, string why)
    {
        Ban(hop.Server.Peer, $"blocks {hop.Blocks} of session {Id}: {why}");
        _tally.FirstDetectionPosition ??= Positions;
        throw new VerificationFailedException($"server {hop.Server.Peer}: {why}");
    }

    private void Ban(PeerId peer, string why)
    {
        _client.Routes.Ban(peer, why, _client.Options.FraudBanDuration);
        _tally.Banned.Add(peer.ToString());
    }

    /// <summary>At a window end (or, <paramref name="final"/>, the session's end) replays hops on validators: all in strict mode, each with the check rate in sample mode.</summary>
    internal async Task CheckWindowAsync(bool final, CancellationToken cancellation)
    {
        if (!Verifying || Positions == 0) return;
        var window = Math.Max(1, _client.Options.CheckWindow);
        if (final ? Positions <= _lastWindowCheck : Positions / window <= _lastWindowCheck / window) return;
        _lastWindowCheck = Positions;
        foreach (var hop in _hops.ToList())
        {
            if (hop.CheckedThrough >= Positions) continue;
            if (_client.Options.Verify == VerifyMode.Sample && _checkRandom.NextDouble() >= _client.Options.CheckRate) continue;
            await CheckAsync(hop, cancellation).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Replays the hop's whole history as one prefill on a validator, exactly as a recovery would (a fresh session, every position
    /// from 0 in one step), and compares the result with what the hop returned. A disagreement goes to a second validator: two
    /// validators that agree with each other convict the hop; a second that agrees with the hop convicts the first.
    /// </summary>
    private async Task CheckAsync(Hop hop, CancellationToken cancellation)
    {
        var started = Time.GetTimestamp();
        var input = Concatenate(hop.Inputs);
        var output = Concatenate(hop.Outputs);
        if (input.Shape[1] != Positions || output.Shape[1] != Positions) return;
        // A validator on the route could have seen the hop's output (the next hop) or be the hop itself after a recovery.
        var exclude = _hops.Select(h => h.Server.Peer).ToHashSet();
        var candidates = (await _client.Routes.ValidatorsAsync(hop.Blocks, exclude, cancellation).ConfigureAwait(false)).ToArray();
        if (candidates.Length < 2)
        {
            // Too few servers off the route: fall back to any but the hop and its neighbours, which see its input or output.
            var index = _hops.IndexOf(hop);
            exclude = _hops.Where((_, i) => Math.Abs(i - index) <= 1).Select(h => h.Server.Peer).ToHashSet();
            candidates = (await _client.Routes.ValidatorsAsync(hop.Blocks, exclude, cancellation).ConfigureAwait(false)).ToArray();
        }
        _checkRandom.Shuffle(candidates);
        var replays = new List<TensorData>();
        try
        {
            await CheckOnAsync(hop, candidates, input, output, replays, started, cancellation).ConfigureAwait(false);
        }
        finally
        {
            // The validators' outputs are compared and done with (evidence holds copies of its own).
            foreach (var replay in replays) replay.Dispose();
        }
    }

    /// <summary>Replays on <paramref name="candidates"/> in turn until a verdict, and acts on it; every replay received goes to <paramref name="replays"/>.</summary>
    private async Task CheckOnAsync(Hop hop, ServerInfo[] candidates, TensorData input, TensorData output, List<TensorData> replays, long started, CancellationToken cancellation)
    {
        var tolerance = _client.Options.CheckToleranceFor(output.Type);
        var validators = new List<ServerInfo>();
        var deviations = new List<double>();
        SignedReplay? firstReplay = null;
        int? firstBad = null;
        var verdict = CheckVerdict.NoValidator;
        foreach (var candidate in candidates)
        {
            var signed = await SignedReplayOnAsync(candidate, hop.Blocks, input, cancellation).ConfigureAwait(false);
            if (signed is null) continue;
            var replay = signed.Output;
            replays.Add(replay);
            _tally.ReplayedPositions += Positions;
            var (deviation, bad) = Compare(output, replay, tolerance);
            validators.Add(candidate);
            deviations.Add(deviation);
            if (firstReplay is null)
            {
                firstBad = bad;
                verdict = bad is null ? CheckVerdict.Passed : CheckVerdict.Unresolved;
                if (bad is null) break;
                firstReplay = signed;
                continue;
            }
            var (betweenValidators, _) = Compare(firstReplay.Output, replay, tolerance);
            verdict = bad is null ? CheckVerdict.ValidatorLied : betweenValidators <= tolerance ? CheckVerdict.Convicted : CheckVerdict.Unresolved;
            break;
        }
        var record = new CheckRecord(hop.Server.Peer.ToString(), hop.Blocks, Positions, validators.Select(v => v.Peer.ToString()).ToList(), deviations, firstBad, verdict,
            Time.GetElapsedTime(started));
        _tally.Checks.Add(record);
        _tally.CheckTime += record.Elapsed;
        switch (verdict)
        {
            case CheckVerdict.Passed:
                hop.CheckedThrough = Positions;
                break;
            case CheckVerdict.ValidatorLied:
                hop.CheckedThrough = Positions;
                Ban(validators[0].Peer, $"validator of blocks {hop.Blocks}: its replay disagreed with the server and with a second validator");
                if (firstReplay!.Commitments is { } validatorCommitments)
                {
                    // The lying validator signed its replay like any step: the same evidence convicts it in others' eyes.
                    var evidence = new FraudEvidence(validators[0].Peer.ToString(), _client.Manifest.ModelId, firstReplay.SessionId, hop.Blocks, validatorCommitments, Detached(input),
                        Detached(firstReplay.Output), record);
                    _tally.Evidence.Add(evidence);
                    if (await _client.PublishAsync(evidence, cancellation).ConfigureAwait(false)) _tally.ReportsPublished.Add(evidence.Server);
                }
                break;
            case CheckVerdict.Convicted:
                if (hop.Commitments.All(c => c is not null))
                {
                    var evidence = new FraudEvidence(hop.Server.Peer.ToString(), _client.Manifest.ModelId, hop.SessionId, hop.Blocks,
                        hop.Commitments.Select(c => c!).ToList(), Detached(input), Detached(output), record);
                    _tally.Evidence.Add(evidence);
                    if (await _client.PublishAsync(evidence.Trimmed(firstBad!.Value), cancellation).ConfigureAwait(false)) _tally.ReportsPublished.Add(evidence.Server);
                }
                Convict(hop, $"two validators' replays differ from its output by {deviations.Min():G3} × RMS from position {firstBad}");
                break;
            case CheckVerdict.Unresolved:
                // The output is disputed and nobody can be convicted: the text must not rest on it, so the generation starts
                // again without the hop and the validators that disagreed, each left out only for the ordinary ban duration.
                var why = $"check of blocks {hop.Blocks} unresolved (deviations {string.Join(", ", deviations.Select(d => d.ToString("G3")))}); left out for now, not convicted";
                foreach (var peer in validators.Select(v => v.Peer).Prepend(hop.Server.Peer)) _client.Routes.Ban(peer, why);
                throw new VerificationFailedException($"server {hop.Server.Peer}: {why}");
        }
    }

    /// <summary>A copy over an array of its own, for evidence that outlives the session's pooled buffers.</summary>
    private static TensorData Detached(TensorData tensor) => new(tensor.Type, tensor.Shape, tensor.Bytes.ToArray());

    /// <summary>Runs <paramref name="input"/> from position 0 on <paramref name="server"/>'s <paramref name="blocks"/> in a fresh session, as a check does; null when the server fails.</summary>
    internal Task<TensorData?> ReplayAsync(ServerInfo server, BlockRange blocks, TensorData input, CancellationToken cancellation) =>
        ReplayOnAsync(server, blocks, input, cancellation);

    /// <summary>Opens a session on <paramref name="server"/>, runs <paramref name="input"/> from position 0 in one step, closes it; null when the server fails.</summary>
    private async Task<TensorData?> ReplayOnAsync(ServerInfo server, BlockRange blocks, TensorData input, CancellationToken cancellation) =>
        (await SignedReplayOnAsync(server, blocks, input, cancellation).ConfigureAwait(false))?.Output;

    /// <summary>A validator's replay with what it signed for it: its session id and its commitments, one per replayed step (null when one came without).</summary>
    private sealed record SignedReplay(TensorData Output, string SessionId, IReadOnlyList<StepCommitment>? Commitments);

    /// <summary>As <see cref="ReplayOnAsync"/>, keeping the validator's commitments, so a validator that lies can be reported like a server.</summary>
    private async Task<SignedReplay?> SignedReplayOnAsync(ServerInfo server, BlockRange blocks, TensorData input, CancellationToken cancellation)
    {
        Hop validator;
        try
        {
            validator = await OpenHopAsync(new PlannedHop(server, blocks), cancellation).ConfigureAwait(false);
        }
        catch (HopFailedException e)
        {
            _client.Options.Log?.Invoke($"validator {e.Message}");
            return null;
        }
        var results = new List<(TensorData Output, StepCommitment? Commitment)>();
        var complete = false;
        try
        {
            if (!(complete = await ReplayStepsAsync(validator, ReplaySteps(input), results, cancellation).ConfigureAwait(false))) return null;
            var commitments = results.All(r => r.Commitment is not null) ? results.Select(r => r.Commitment!).ToList() : null;
            if (results.Count == 1) return new SignedReplay(results[0].Output, validator.SessionId, commitments);
            return new SignedReplay(Concatenate(results.Select(r => r.Output).ToList()), validator.SessionId, commitments);
        }
        finally
        {
            // A replay in pieces is returned as one copy; the pieces, and those of a replay that failed part way, are done with.
            if (results.Count > 1 || !complete) foreach (var (output, _) in results) output.Dispose();
            await TrySendAsync(validator, new CloseSession(validator.SessionId), CancellationToken.None).ConfigureAwait(false);
            await validator.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The largest deviation of <paramref name="claimed"/> from <paramref name="reference"/> over all positions, each position's
    /// max |Δ| divided by the RMS of its reference row, and the first position over <paramref name="tolerance"/> (null if none).
    /// </summary>
    internal static (double Deviation, int? FirstBad) Compare(TensorData claimed, TensorData reference, double tolerance)
    {
        if (claimed.Type != reference.Type || claimed.Bytes.Length != reference.Bytes.Length) return (double.PositiveInfinity, 0);
        // fp32 is read in place: a check compares the hop's whole history, so copying it would double the check's memory.
        ReadOnlySpan<float> a = claimed.Type == DType.Float32 ? claimed.AsFloats() : claimed.ToFloatArray();
        ReadOnlySpan<float> b = reference.Type == DType.Float32 ? reference.AsFloats() : reference.ToFloatArray();
        var width = (int)reference.Shape[^1];
        var worst = 0.0;
        int? firstBad = null;
        for (var p = 0; p * width < b.Length; p++)
        {
            var row = b.Slice(p * width, width);
            var other = a.Slice(p * width, width);
            double sum = 0, max = 0;
            for (var i = 0; i < width; i++)
            {
                sum += (double)row[i] * row[i];
                var d = Math.Abs((double)other[i] - row[i]);
                if (!(d <= max)) max = d;
            }
            var deviation = max / (Math.Sqrt(sum / width) + 1e-12);
            if (!(deviation <= worst)) worst = deviation;
            if (!(deviation <= tolerance)) firstBad ??= p;
        }
        return (worst, firstBad);
    }
}
