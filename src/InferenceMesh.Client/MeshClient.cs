using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>How a step travels: chained (each server pushes to the next) or relayed (every hop returns to the client).</summary>
public enum RouteMode { Chained, Relayed }

/// <summary>Client behaviour.</summary>
/// <param name="StepTimeout">A step (or a session opening) with no answer for this long counts as a failed server.</param>
/// <param name="BanDuration">How long a failed server is left out of new routes.</param>
/// <param name="MaxRecoveries">Server replacements one session may make before it gives up.</param>
public sealed record MeshClientOptions(RouteMode Mode = RouteMode.Chained, TimeSpan? StepTimeout = null, TimeSpan? BanDuration = null, int MaxRecoveries = 16)
{
    public TimeSpan EffectiveStepTimeout => StepTimeout ?? TimeSpan.FromSeconds(30);
    public TimeSpan EffectiveBanDuration => BanDuration ?? TimeSpan.FromMinutes(1);
}

/// <summary>
/// The developer's entry point to a mesh: runs the model's Head and Tail locally (token ids and text never
/// leave this process), plans routes over the servers a directory lists, and streams generated text.
/// </summary>
public sealed class MeshClient : IAsyncDisposable
{
    private readonly IStageExecutor head;
    private readonly IStageExecutor tail;
    private readonly ConcurrentDictionary<string, DateTime> bannedUntil = new(StringComparer.Ordinal);

    public MeshClient(Manifest manifest, IStageExecutor head, IStageExecutor tail, Llama2cTokenizer tokenizer, IStageConnector connector, IServerDirectory directory, MeshClientOptions? options = null)
    {
        Manifest = manifest;
        this.head = head;
        this.tail = tail;
        Tokenizer = tokenizer;
        Connector = connector;
        Directory = directory;
        Options = options ?? new MeshClientOptions();
    }

    public Manifest Manifest { get; }
    public Llama2cTokenizer Tokenizer { get; }
    public MeshClientOptions Options { get; }
    internal IStageConnector Connector { get; }
    internal IServerDirectory Directory { get; }
    internal IStageExecutor Head => head;
    internal IStageExecutor Tail => tail;

    /// <summary>Loads the Head, Tail and tokenizer of a split model directory.</summary>
    public static MeshClient Open(string splitDirectory, IStageConnector connector, IServerDirectory directory, MeshClientOptions? options = null)
    {
        var manifest = Manifest.Load(splitDirectory);
        var config = manifest.Config ?? throw new MeshException(MeshErrorCode.InvalidManifest, $"{splitDirectory}: the manifest has no model config");
        var tokenizer = Llama2cTokenizer.Load(Path.Combine(splitDirectory, manifest.TokenizerFile ?? ModelStore.TokenizerFile), config.Vocab);
        var executorOptions = new OrtExecutorOptions(MaxSequence: config.MaxSequence, IntraOpThreads: 1, AllowSpinning: false);
        var headStage = new OrtStageExecutor(manifest.Head, File.ReadAllBytes(Path.Combine(splitDirectory, manifest.Head.File)), executorOptions);
        try
        {
            var tailStage = new OrtStageExecutor(manifest.Tail, File.ReadAllBytes(Path.Combine(splitDirectory, manifest.Tail.File)), executorOptions);
            return new MeshClient(manifest, headStage, tailStage, tokenizer, connector, directory, options);
        }
        catch
        {
            headStage.Dispose();
            throw;
        }
    }

    private int recoveries;

    /// <summary>Servers replaced over all sessions of this client.</summary>
    public int Recoveries => Volatile.Read(ref recoveries);

    internal void CountRecovery() => Interlocked.Increment(ref recoveries);

    internal bool IsBanned(string peerId) => bannedUntil.TryGetValue(peerId, out var until) && until > DateTime.UtcNow;

    internal void Ban(string peerId) => bannedUntil[peerId] = DateTime.UtcNow + Options.EffectiveBanDuration;

    /// <summary>Plans a route over all blocks and opens a session on every server of it. Safe to cancel.</summary>
    public async Task<InferenceSession> OpenSessionAsync(int maxLength, RouteMode? mode = null, CancellationToken cancellation = default)
    {
        var session = new InferenceSession(this, Guid.NewGuid().ToString("N"), maxLength, mode ?? Options.Mode);
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

    /// <summary>Streams the text generated for <paramref name="prompt"/> through the mesh, prompt text first; the session closes when enumeration ends.</summary>
    public async IAsyncEnumerable<string> GenerateAsync(string prompt, GenerationOptions options, RouteMode? mode = null, [EnumeratorCancellation] CancellationToken cancellation = default)
    {
        var config = Manifest.Config!;
        await using var session = await OpenSessionAsync(Math.Min(options.MaxTokens, config.MaxSequence), mode, cancellation).ConfigureAwait(false);
        var generator = new TextGenerator(Tokenizer, config.MaxSequence);
        await foreach (var text in generator.GenerateAsync(prompt, options, session.StepAsync, cancellation).ConfigureAwait(false))
            yield return text;
    }

    public ValueTask DisposeAsync()
    {
        head.Dispose();
        tail.Dispose();
        return ValueTask.CompletedTask;
    }
}
