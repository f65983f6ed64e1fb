using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.Client;

/// <summary>How a <see cref="MeshClient"/> joins a mesh and behaves in it; every member has a default.</summary>
public sealed record MeshClientOptions
{
    /// <summary>Peers to join through, with <c>/p2p/</c>. When empty, <see cref="LocalSwarm"/> names them.</summary>
    public IReadOnlyList<Multiaddr> Bootstrap { get; init; } = [];

    /// <summary>
    /// TCP addresses the client listens on (e.g. <c>/ip4/0.0.0.0/tcp/4001</c>); empty (the default) for none. A client behind
    /// a NAT that listens can be hole punched (DCUtR) by the private servers it reaches through a relay, and its streams to
    /// them then run direct: its dials leave from the listen port, so the address the relay observes is the one punched.
    /// </summary>
    public IReadOnlyList<Multiaddr> ListenAddresses { get; init; } = [];

    /// <summary>
    /// With <see cref="ListenAddresses"/>, how long the client waits, when it first reaches a server through a relay, for the
    /// server's hole punch to give a direct connection before measuring and using it (default 2 s; the punch takes about
    /// two relayed round trips). A server behind a symmetric NAT cannot be punched and costs this wait once.
    /// </summary>
    public TimeSpan HolePunchWait { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The split model directory (manifest.json) the head, tail and tokenizer are loaded from; when null, <see cref="LocalSwarm"/>'s.</summary>
    public string? ModelDirectory { get; init; }

    /// <summary>
    /// The state folder of a local swarm started by <c>inferencemesh swarm up</c> (its <c>swarm.json</c>): fills
    /// in <see cref="Bootstrap"/>, <see cref="ModelDirectory"/> and <see cref="LinkDelay"/> where they are not given.
    /// </summary>
    public string? LocalSwarm { get; init; }

    /// <summary>How steps travel; the one place the route mode is chosen.</summary>
    public RouteMode Mode { get; init; } = RouteMode.Chained;

    /// <summary>
    /// In <see cref="RouteMode.Chained"/> routes, whether each server keeps the outputs it pushes on (counted in its KV budget) and
    /// sends this client a receipt of about 200 bytes instead: the client then takes in one activation per token (the last
    /// server's) instead of one per server, and fetches a server's kept outputs only when the next server fails and its
    /// replacement must replay them. Needs <see cref="Verify"/> off, since checks compare the activations the client holds.
    /// Off by default.
    /// </summary>
    public bool ServersKeepOutputs { get; init; }

    /// <summary>A step (or a session opening) with no answer for this long counts as a failed server.</summary>
    public TimeSpan StepTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a failed server is left out of new routes.</summary>
    public TimeSpan BanDuration { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>How long a listing of the servers is reused before the directory is asked again (a recovery always asks again).</summary>
    public TimeSpan ServerListLifetime { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Server replacements one session may make before it gives up.</summary>
    public int MaxRecoveries { get; init; } = 16;

    /// <summary>Emulated one-way delay on the client's stage streams (user space: tests and benchmarks); null takes the local swarm's, else none.</summary>
    public TimeSpan? LinkDelay { get; init; }

    /// <summary>
    /// The chat template family chats are rendered with (<c>--chat-template</c>); null uses the model's own
    /// tokenizer_config.json template, recognised by its markers.
    /// </summary>
    public ChatTemplateFamily? ChatTemplate { get; init; }

    /// <summary>How much servers are checked (<see cref="VerifyMode.Sample"/> by default).</summary>
    public VerifyMode Verify { get; init; } = VerifyMode.Sample;

    /// <summary>In <see cref="VerifyMode.Sample"/>, the probability that a hop is replayed on a validator at the end of a window; 0..1.</summary>
    public double CheckRate { get; init; } = 0.1;

    /// <summary>Positions per check window: a hop may be checked each time the session's length crosses a multiple of it, and at the session's end.</summary>
    public int CheckWindow { get; init; } = 32;

    /// <summary>
    /// The largest honest deviation of a hop's float32 output from a validator's replay, as max |Δ| over a position's row divided by the
    /// row's RMS. Calibrated on honest executors (ONNX Runtime and ILGPU, thread counts, decode against prefill): see <c>docs/VERIFICATION.md</c>.
    /// </summary>
    public double CheckTolerance { get; init; } = 2e-4;

    /// <summary>
    /// As <see cref="CheckTolerance"/>, for a hop whose output is float16 (exports that keep activations in half precision): one
    /// rounding step of float16 is already 1e-3 of a value, so honest replays differ by far more than float32's tolerance.
    /// Calibrated on the ONNX Runtime GenAI builder's fp16 export: see <c>docs/VERIFICATION.md</c>.
    /// </summary>
    public double CheckToleranceFloat16 { get; init; } = 2e-2;

    /// <summary>The tolerance a check applies to outputs of <paramref name="type"/>: <see cref="CheckToleranceFloat16"/> for float16 (never below <see cref="CheckTolerance"/>), else <see cref="CheckTolerance"/>.</summary>
    public double CheckToleranceFor(DType type) => type == DType.Float16 ? Math.Max(CheckTolerance, CheckToleranceFloat16) : CheckTolerance;

    /// <summary>Seeds which windows are checked and which validators are asked (each session draws from seed + its number); null draws at random.</summary>
    public int? CheckSeed { get; init; }

    /// <summary>How long a server caught lying (or a validator caught framing one) is left out of this client's routes.</summary>
    public TimeSpan FraudBanDuration { get; init; } = TimeSpan.FromHours(24);

    /// <summary>
    /// Where convictions are published and other clients' reports are read: the DHT when null and the client joined a mesh
    /// (<see cref="MeshClient.ConnectAsync"/>); none when null for a client opened over a given dialer.
    /// </summary>
    public IFraudReportBoard? FraudReports { get; init; }

    /// <summary>Whether a conviction's evidence is published to <see cref="FraudReports"/> (trimmed to the wrong step and the inputs before it).</summary>
    public bool PublishFraudReports { get; init; } = true;

    /// <summary>Whether reports against a server are read and judged (its evidence re-run on two validators) before this client first routes through it.</summary>
    public bool JudgeFraudReports { get; init; } = true;

    /// <summary>How long a server's reports, once judged, are not read again.</summary>
    public TimeSpan FraudReportRefresh { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long publishing one report may take before the conviction goes on without it.</summary>
    public TimeSpan FraudReportTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Transports for the client's host; TCP when null.</summary>
    public IReadOnlyList<ITransport>? Transports { get; init; }

    /// <summary>Clock for timeouts, bans and the server list's lifetime.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Receives one line per notable event (joins, bans, recoveries); null for none.</summary>
    public Action<string>? Log { get; init; }
}
