using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.P2P.Relay;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>
/// The developer's entry point to a mesh: runs the model's Head and Tail locally (token ids and text never
/// leave this process), plans routes over the servers the mesh lists, and streams generated text.
/// </summary>
/// <example><code>
/// await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = ".inferencemesh/swarm" }, ct);
/// await foreach (var text in client.GenerateAsync("Once upon a time", new GenerationOptions(MaxTokens: 200), ct)) Console.Write(text);
/// </code></example>
public sealed partial class MeshClient : IAsyncDisposable
{
    private readonly IStageExecutor _head;
    private readonly IStageExecutor _tail;
    private readonly IAsyncDisposable? _peer;
    private readonly Ed25519KeyPair? _identity;
    private readonly IServerDirectory _directory;
    private int _recoveries;
    private int _sessions;

    private MeshClient(Manifest manifest, IStageExecutor head, IStageExecutor tail, ITextTokenizer tokenizer, StageDialer dialer, IServerDirectory directory,
        MeshClientOptions options, IAsyncDisposable? peer, Ed25519KeyPair? identity, StageTraffic traffic)
    {
        Traffic = traffic;
        Manifest = manifest;
        _head = head;
        _tail = tail;
        Tokenizer = tokenizer;
        Dialer = dialer;
        Options = options;
        Routes = new RouteManager(directory, manifest.ModelId, options) { Screen = options.JudgeFraudReports && options.FraudReports is not null ? ScreenAsync : null };
        _directory = directory;
        _peer = peer;
        _identity = identity;
    }

    public Manifest Manifest { get; }
    /// <summary>The model's tokenizer (llama2.c's tokenizer.bin or Hugging Face's tokenizer.json): token ids never leave this process.</summary>
    public ITextTokenizer Tokenizer { get; }
    public MeshClientOptions Options { get; }

    /// <summary>Where this client's steps go: server list, bans, route planning.</summary>
    public RouteManager Routes { get; }

    /// <summary>Stage-protocol bytes this client sent and received on the channels <see cref="ConnectAsync"/>'s dialer opens (with a dialer given to <c>Open</c>, nothing is counted here).</summary>
    public StageTraffic Traffic { get; }

    internal StageDialer Dialer { get; }
    internal IStageExecutor Head => _head;
    internal IStageExecutor Tail => _tail;

    /// <summary>Servers replaced over all sessions of this client.</summary>
    public int Recoveries => Volatile.Read(ref _recoveries);

    internal void CountRecovery() => Interlocked.Increment(ref _recoveries);

    /// <summary>
    /// Joins the mesh through <see cref="MeshClientOptions.Bootstrap"/> (or the recorded local swarm) as a DHT
    /// client with a fresh identity, and loads the head, tail and tokenizer of the model. Safe to cancel.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.PeersUnreachable"/> when no bootstrap peer answered;
    /// <see cref="MeshErrorCode.InvalidArgument"/> when neither bootstrap peers nor a local swarm are given, or when
    /// <see cref="MeshClientOptions.ServersKeepOutputs"/> is set with verification on.</exception>
    public static async Task<MeshClient> ConnectAsync(MeshClientOptions options, CancellationToken cancellation = default)
    {
        options = WithLocalSwarm(options);
        EnsureConsistent(options);
        if (options.Bootstrap.Count == 0 || options.ModelDirectory is null)
            throw new MeshException(MeshErrorCode.InvalidArgument, "give bootstrap peers and a model directory, or a local swarm started with 'inferencemesh swarm up'");
        var manifest = Manifest.Load(options.ModelDirectory);
        var identity = Ed25519KeyPair.Generate();
        MeshPeer? peer = null;
        try
        {
            peer = await MeshPeer.StartAsync(new MeshPeerOptions
            {
                Identity = identity,
                Bootstrap = options.Bootstrap,
                Mode = DhtMode.Client,
                RequireBootstrap = true,
                Listen = options.ListenAddresses,
                Transports = options.Transports,
                Time = options.Time,
                Log = options.Log,
            }, cancellation).ConfigureAwait(false);
            var host = peer.Host;
            var punchWait = options.ListenAddresses.Count > 0 ? options.HolePunchWait : TimeSpan.Zero;
            var directory = new DhtServerDirectory(peer.Spans, manifest.BlockCount, async (id, addresses, ct) =>
            {
                return await MeasureRoundTripAsync(host, id, addresses, punchWait, options.Time, ct).ConfigureAwait(false);
            }, id => ConnectionKind(host, id), options.Time);
            var delay = options.LinkDelay ?? TimeSpan.Zero;
            var traffic = new StageTraffic();
            StageDialer dialer = async (peerId, addresses, ct) =>
            {
                var stream = await host.NewStreamAsync(peerId, addresses, [StageProtocol.Id], ct).ConfigureAwait(false);
                return new StageChannel(delay > TimeSpan.Zero ? new DelayedDuplexPipe(stream, delay) : stream, traffic: traffic) { IsRelayed = stream.Connection.IsRelayed };
            };
            return Open(options.ModelDirectory, dialer, directory, options with { FraudReports = options.FraudReports ?? new DhtFraudReportBoard(peer.FraudReports) },
                peer, identity, traffic);
        }
        catch
        {
            if (peer is not null) await peer.DisposeAsync().ConfigureAwait(false);
            identity.Dispose();
            throw;
        }
    }

    private static void EnsureConsistent(MeshClientOptions options)
    {
        if (options.ServersKeepOutputs && options.Verify != VerifyMode.Off)
            throw new MeshException(MeshErrorCode.InvalidArgument,
                $"servers can keep their outputs only with verification off (it is {options.Verify}): a check compares the activations the client holds");
    }

    /// <summary>
    /// A client over any dialer and directory (an in-memory mesh in tests and benchmarks): loads the head,
    /// tail and tokenizer of a split model directory. <see cref="ConnectAsync"/> is the way into a real mesh.
    /// </summary>
    public static MeshClient Open(string splitDirectory, StageDialer dialer, IServerDirectory directory, MeshClientOptions? options = null) =>
        Open(splitDirectory, dialer, directory, options ?? new MeshClientOptions(), null, null, new StageTraffic());

    private static MeshClient Open(string splitDirectory, StageDialer dialer, IServerDirectory directory, MeshClientOptions options, IAsyncDisposable? peer, Ed25519KeyPair? identity,
        StageTraffic traffic)
    {
        EnsureConsistent(options);
        var manifest = Manifest.Load(splitDirectory);
        var config = manifest.Config ?? throw new MeshException(MeshErrorCode.InvalidManifest, $"{splitDirectory}: the manifest has no model config");
        var tokenizer = TokenizerLoader.LoadOrIdsOnly(splitDirectory, config.Vocab, manifest.TokenizerFile);
        var executorOptions = new OrtExecutorOptions(MaxSequence: config.MaxSequence, IntraOpThreads: 1, AllowSpinning: false);
        var head = new OrtStageExecutor(manifest.Head, File.ReadAllBytes(Path.Combine(splitDirectory, manifest.Head.File)), executorOptions, splitDirectory);
        try
        {
            var tail = new OrtStageExecutor(manifest.Tail, File.ReadAllBytes(Path.Combine(splitDirectory, manifest.Tail.File)), executorOptions, splitDirectory);
            return new MeshClient(manifest, head, tail, tokenizer, dialer, directory, options, peer, identity, traffic);
        }
        catch
        {
            head.Dispose();
            (tokenizer as IDisposable)?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Pings the server on the connection its streams will use (an open one, else the first address that dials, direct
    /// ones before <c>/p2p-circuit</c> ones), so a relayed server's round trip includes both legs through the relay. A
    /// relayed connection is first given up to <paramref name="punchWait"/> to be replaced by a direct one (the server hole
    /// punches a listening client as soon as it is reached through the relay), so the streams opened next run direct.
    /// </summary>
    private static async Task<double> MeasureRoundTripAsync(Libp2pHost host, PeerId id, IReadOnlyList<Multiaddr> addresses, TimeSpan punchWait, TimeProvider time,
        CancellationToken cancellation)
    {
        var conn = host.GetConnection(id);
        P2PException? last = null;
        foreach (var address in addresses.OrderBy(CircuitRelayClient.IsCircuit))
        {
            if (conn is not null)
                break;
            try
            {
                conn = await host.DialAsync(address.PeerId is null ? address.WithPeerId(id) : address, cancellation).ConfigureAwait(false);
            }
            catch (P2PException e)
            {
                last = e;
            }
        }
        if (conn is null)
            throw last ?? new MeshException(MeshErrorCode.RouteUnavailable, $"{id} announced no address");
        for (var waited = time.GetTimestamp(); conn.IsRelayed && time.GetElapsedTime(waited) < punchWait;)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), time, cancellation).ConfigureAwait(false);
            conn = host.GetConnection(id) ?? conn;
        }
        return (await conn.PingAsync(1, cancellation).ConfigureAwait(false))[0].TotalMilliseconds;
    }

    /// <summary>What the host's pool holds towards <paramref name="peer"/>: a relayed connection runs over a <c>/p2p-circuit</c> address.</summary>
    private static PeerConnection ConnectionKind(Libp2pHost host, PeerId peer) => host.GetConnection(peer) switch
    {
        null => PeerConnection.None,
        { IsRelayed: true } => PeerConnection.Relayed,
        _ => PeerConnection.Direct,
    };

    /// <summary>
    /// Who serves which blocks now: every server with an unexpired announcement of this model (a server killed without
    /// a goodbye drops out when its announcement lapses), its state, announced throughput and KV room, a round trip
    /// measured now and how this client is connected to it. Asks the directory afresh each call. Safe to cancel.
    /// </summary>
    public async Task<SwarmSnapshot> GetSwarmAsync(CancellationToken cancellation = default) =>
        new(Manifest.ModelId, Manifest.BlockCount, Options.Time.GetUtcNow(), await _directory.SurveyAsync(Manifest.ModelId, cancellation).ConfigureAwait(false));

    private static MeshClientOptions WithLocalSwarm(MeshClientOptions options)
    {
        if (options.LocalSwarm is null || options.Bootstrap.Count > 0 && options.ModelDirectory is not null) return options;
        var swarm = SwarmState.Load(options.LocalSwarm);
        return options with
        {
            Bootstrap = options.Bootstrap.Count > 0 ? options.Bootstrap : [Multiaddr.Parse(swarm.Bootstrap.DialAddress)],
            ModelDirectory = options.ModelDirectory ?? swarm.Model,
            LinkDelay = options.LinkDelay ?? swarm.LinkDelayTime,
        };
    }

    /// <summary>
    /// Plans a route over all blocks and opens a session for up to <paramref name="maxLength"/> positions on every server of it. Safe to cancel.
    /// Its steps are verified as <see cref="MeshClientOptions.Verify"/> says; a conviction ends a step with a <see cref="MeshException"/>
    /// (<see cref="MeshErrorCode.IntegrityMismatch"/>) here, while <see cref="CompleteAsync"/> and <see cref="GenerateAsync"/> start again without the liar.
    /// </summary>
    public Task<InferenceSession> OpenSessionAsync(int maxLength, CancellationToken cancellation = default) =>
        OpenSessionAsync(maxLength, new VerificationTally(Options.Verify), cancellation);

    private async Task<InferenceSession> OpenSessionAsync(int maxLength, VerificationTally tally, CancellationToken cancellation)
    {
        var number = Interlocked.Increment(ref _sessions);
        var random = Options.CheckSeed is { } seed ? new Random(unchecked(seed + number)) : new Random();
        var session = new InferenceSession(this, Guid.NewGuid().ToString("N"), maxLength, tally, random);
        try
        {
            await session.OpenAsync(cancellation).ConfigureAwait(false);
            return session;
        }
        catch
        {
            await session.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Opens a session long enough for the prompt and the tokens <paramref name="options"/> allow; refuses a prompt the context cannot hold.</summary>
    private async Task<(InferenceSession Session, int PromptTokens)> OpenForPromptAsync(IReadOnlyList<int> prompt, GenerationOptions options, VerificationTally tally,
        CancellationToken cancellation)
    {
        var context = Manifest.Config!.MaxSequence;
        var promptTokens = prompt.Count;
        if (promptTokens > context)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"the prompt is {promptTokens} tokens; the model's context is {context}");
        return (await OpenSessionAsync(TextGenerator.PositionLimit(promptTokens, options, context), tally, cancellation).ConfigureAwait(false), promptTokens);
    }

    /// <summary>
    /// Streams the text generated for <paramref name="prompt"/> through the mesh, prompt text first; the session
    /// closes when enumeration ends. When verification convicts a server, generation starts again without it and the
    /// text already streamed is not repeated (in <see cref="VerifyMode.Sample"/> that text may hold the lie's effect;
    /// <see cref="CompleteAsync"/> in <see cref="VerifyMode.Strict"/> hands out only checked text). Safe to cancel: the session is closed on every server.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.ContextOverflow"/> when the prompt does not fit the model's context.</exception>
    public IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options, CancellationToken cancellation = default) =>
        StreamAsync(TextGenerator.EncodePrompt(Tokenizer, prompt), null, echoPrompt: true, options, cancellation);

    /// <summary>
    /// Streams the assistant's reply to <paramref name="messages"/> (system, user and assistant turns) through the mesh:
    /// rendered with the model's chat template, or the family <see cref="MeshClientOptions.ChatTemplate"/> names; only the
    /// reply is yielded, and the family's end-of-turn token ends it as EOS does. A model without a template (stories260K)
    /// continues the messages' text joined with line breaks. Verified as <see cref="GenerateAsync"/> is. Safe to cancel.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the model's template is of no known family and no override is set.</exception>
    public IAsyncEnumerable<string> GenerateChatAsync(IReadOnlyList<ChatTurn> messages, GenerationOptions options, CancellationToken cancellation = default)
    {
        var prompt = ChatPrompt.Encode(Tokenizer, messages, Options.ChatTemplate);
        return StreamAsync(prompt.Tokens, prompt.StopIds, echoPrompt: false, options, cancellation);
    }

    private async IAsyncEnumerable<string> StreamAsync(IReadOnlyList<int> prompt, IReadOnlySet<int>? stops, bool echoPrompt, GenerationOptions options,
        [EnumeratorCancellation] CancellationToken cancellation)
    {
        var tally = new VerificationTally(Options.Verify);
        var streamed = 0;
        while (true)
        {
            var (session, _) = await OpenForPromptAsync(prompt, options, tally, cancellation).ConfigureAwait(false);
            await using (session.ConfigureAwait(false))
            {
                var seen = 0;
                var restart = false;
                var stepped = false;
                ValueTask<float[]> Step(int[] tokens, int start, CancellationToken ct)
                {
                    stepped = true;
                    return session.StepAsync(tokens, start, ct);
                }
                var pieces = new TextGenerator(Tokenizer, Manifest.Config!.MaxSequence, stops, decodeReplyAlone: !echoPrompt, Manifest.MaxStepPositions)
                    .GenerateAsync(prompt, options, Step, cancellation).GetAsyncEnumerator(cancellation);
                await using (pieces.ConfigureAwait(false))
                    while (true)
                    {
                        string? piece = null;
                        try
                        {
                            if (await pieces.MoveNextAsync().ConfigureAwait(false)) piece = pieces.Current;
                            else await session.CheckWindowAsync(final: true, cancellation).ConfigureAwait(false);
                        }
                        catch (VerificationFailedException e)
                        {
                            restart = Restart(tally, e);
                        }
                        if (piece is null) break;
                        if (!echoPrompt && !stepped) continue;
                        // After a restart the same text comes again (the liar is gone, sampling is seeded): only what is new goes out.
                        seen += piece.Length;
                        if (seen <= streamed) continue;
                        var fresh = piece[(piece.Length - (seen - streamed))..];
                        streamed = seen;
                        yield return fresh;
                    }
                if (!restart) yield break;
            }
        }
    }

    /// <summary>
    /// Streams the ids generated through the mesh after <paramref name="prompt"/>'s ids (the prompt's are not repeated): for a
    /// model without a tokenizer, or to compare runs exactly. Stops at the tokenizer's EOS ids (for a model without a tokenizer,
    /// <c>eos_token_id</c> of its description files). Steps are checked as <see cref="MeshClientOptions.Verify"/> says, but a
    /// conviction ends the generation with <see cref="MeshErrorCode.IntegrityMismatch"/> instead of restarting it. Safe to cancel:
    /// the session is closed on every server.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for an empty prompt or a negative id;
    /// <see cref="MeshErrorCode.ContextOverflow"/> when the prompt does not fit the model's context.</exception>
    public async IAsyncEnumerable<int> GenerateIdsAsync(IReadOnlyList<int> prompt, GenerationOptions options, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var generator = new TokenGenerator(Manifest.Config!.MaxSequence, Tokenizer.EosIds, Manifest.MaxStepPositions);
        var (session, _) = await OpenForPromptAsync(prompt, options, new VerificationTally(Options.Verify), cancellation).ConfigureAwait(false);
        await using (session.ConfigureAwait(false))
        {
            await foreach (var id in generator.GenerateAsync(prompt, options, session.StepAsync, cancellation).ConfigureAwait(false))
                yield return id;
            await session.CheckWindowAsync(final: true, cancellation).ConfigureAwait(false);
        }
    }

    /// <summary>Counts a restart after a conviction; past <see cref="MeshClientOptions.MaxRecoveries"/> the conviction ends the generation.</summary>
    private bool Restart(VerificationTally tally, MeshException conviction)
    {
        if (tally.Restarts >= Options.MaxRecoveries)
            throw new MeshException(MeshErrorCode.IntegrityMismatch, $"gave up after {tally.Restarts} restarts for lying servers; last: {conviction.Message}", conviction);
        tally.Restarts++;
        Options.Log?.Invoke($"restarting the generation: {conviction.Message}");
        return true;
    }

    /// <summary>
    /// Generates like <see cref="GenerateAsync"/>, hands each piece of text to <paramref name="onText"/> as it
    /// comes (the prompt's first), and returns the whole text with the route, latencies, recoveries and verification. With
    /// <paramref name="stopSequences"/>, generation ends before the first of them appears in the new text, which
    /// is then neither returned nor handed out (text that could begin one is held back until it cannot). Safe to cancel.
    /// </summary>
    public Task<GenerationResult> CompleteAsync(string prompt, GenerationOptions options, Action<string>? onText = null,
        CancellationToken cancellation = default, IReadOnlyList<string>? stopSequences = null) =>
        CompleteTokensAsync(TextGenerator.EncodePrompt(Tokenizer, prompt), null, echoPrompt: true, options, onText, cancellation, stopSequences);

    /// <summary>
    /// Completes a conversation like <see cref="GenerateChatAsync"/>, handing only the reply to <paramref name="onText"/>;
    /// the result's <see cref="GenerationResult.Completion"/> is the reply. Stop sequences work as in <see cref="CompleteAsync"/>.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the model's template is of no known family and no override is set.</exception>
    public Task<GenerationResult> CompleteChatAsync(IReadOnlyList<ChatTurn> messages, GenerationOptions options, Action<string>? onText = null,
        CancellationToken cancellation = default, IReadOnlyList<string>? stopSequences = null)
    {
        var prompt = ChatPrompt.Encode(Tokenizer, messages, Options.ChatTemplate);
        return CompleteTokensAsync(prompt.Tokens, prompt.StopIds, echoPrompt: false, options, onText, cancellation, stopSequences);
    }

    private async Task<GenerationResult> CompleteTokensAsync(IReadOnlyList<int> prompt, IReadOnlySet<int>? stops, bool echoPrompt, GenerationOptions options,
        Action<string>? onText, CancellationToken cancellation, IReadOnlyList<string>? stopSequences)
    {
        var tally = new VerificationTally(Options.Verify);
        var watch = Stopwatch.StartNew();
        var streamed = 0;
        while (true)
        {
            var seen = 0;
            // After a restart the same text comes again (the liar is gone, sampling is seeded): only what is new goes out.
            void Emit(string text)
            {
                seen += text.Length;
                if (seen <= streamed) return;
                onText?.Invoke(text[(text.Length - (seen - streamed))..]);
                streamed = seen;
            }
            try
            {
                var result = await CompleteOnceAsync(prompt, stops, echoPrompt, options, Emit, tally, stopSequences, cancellation).ConfigureAwait(false);
                return result with { Elapsed = watch.Elapsed };
            }
            catch (VerificationFailedException e)
            {
                Restart(tally, e);
            }
        }
    }

    private async Task<GenerationResult> CompleteOnceAsync(IReadOnlyList<int> prompt, IReadOnlySet<int>? stops, bool echoPrompt, GenerationOptions options,
        Action<string> onText, VerificationTally tally, IReadOnlyList<string>? stopSequences, CancellationToken cancellation)
    {
        var started = Options.Time.GetTimestamp();
        TimeSpan? firstToken = null;
        var stopTexts = (stopSequences ?? []).Where(s => s.Length > 0).ToList();
        var holdBack = stopTexts.Count == 0 ? 0 : stopTexts.Max(s => s.Length) - 1;
        var (session, promptTokens) = await OpenForPromptAsync(prompt, options, tally, cancellation).ConfigureAwait(false);
        await using var closing = session.ConfigureAwait(false);
        var strict = Options.Verify == VerifyMode.Strict;
        var promptText = new StringBuilder();
        var completion = new StringBuilder();
        // Strict: each piece's text rests on the positions the session held when it came; it goes out once they are checked.
        var marks = new List<(int Positions, int Length)>();
        var handedOut = 0;
        var generated = 0;
        var stopped = false;
        async ValueTask<float[]> Step(int[] tokens, int start, CancellationToken ct)
        {
            generated++;
            return await session.StepAsync(tokens, start, ct).ConfigureAwait(false);
        }
        void HandOut(int end)
        {
            if (strict)
            {
                var checkedLength = 0;
                foreach (var (positions, length) in marks)
                    if (positions <= session.CheckedPositions) checkedLength = length;
                end = Math.Min(end, checkedLength);
            }
            if (end > handedOut) onText(completion.ToString(handedOut, end - handedOut));
            handedOut = Math.Max(handedOut, end);
        }
        await foreach (var piece in new TextGenerator(Tokenizer, Manifest.Config!.MaxSequence, stops, decodeReplyAlone: !echoPrompt, Manifest.MaxStepPositions).GenerateAsync(prompt, options, Step, cancellation).ConfigureAwait(false))
        {
            // The generator hands out the prompt's text before its first step, and only then new text.
            if (generated == 0)
            {
                promptText.Append(piece);
                if (echoPrompt) onText(piece);
                continue;
            }
            firstToken ??= Options.Time.GetElapsedTime(started);
            completion.Append(piece);
            marks.Add((session.Positions, completion.Length));
            var hit = stopTexts.Count == 0 ? -1 : FirstStop(completion, completion.Length - piece.Length - holdBack, stopTexts);
            if (hit >= 0)
            {
                completion.Length = hit;
                stopped = true;
                break;
            }
            HandOut(completion.Length - holdBack);
        }
        await session.CheckWindowAsync(final: true, cancellation).ConfigureAwait(false);
        strict = false;
        HandOut(completion.Length);
        var limit = TextGenerator.PositionLimit(promptTokens, options, Manifest.Config!.MaxSequence);
        var finish = !stopped && generated >= limit - promptTokens + 1 ? FinishReason.Length : FinishReason.Stop;
        return new GenerationResult(promptText.ToString() + completion, promptTokens, generated, TimeSpan.Zero, session.Route, session.Recoveries, session.Mode,
            completion.ToString(), finish, tally.Report() with { Judgements = Judgements }, firstToken, session.ActivationBytesReceived);
    }

    /// <summary>Where the first stop sequence begins in <paramref name="text"/>, looking only from <paramref name="from"/> (earlier text was searched already); -1 if none.</summary>
    private static int FirstStop(StringBuilder text, int from, List<string> stops)
    {
        from = Math.Max(0, from);
        var tail = text.ToString(from, text.Length - from);
        var first = -1;
        foreach (var stop in stops)
            if (tail.IndexOf(stop, StringComparison.Ordinal) is var at and >= 0 && (first < 0 || at < first)) first = at;
        return first < 0 ? -1 : from + first;
    }

    /// <summary>Stops the client's background work and frees what it holds; a second call does nothing.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        await _closing.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_screened.Values.Select(s => s.Judging.ContinueWith(_ => { }, TaskScheduler.Default))).ConfigureAwait(false);
        _closing.Dispose();
        (Tokenizer as IDisposable)?.Dispose();
        _head.Dispose();
        _tail.Dispose();
        Routes.Dispose();
        if (_peer is not null) await _peer.DisposeAsync().ConfigureAwait(false);
        _identity?.Dispose();
    }
}
