using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>Why a stage request failed; sent in <see cref="StageError"/> and stable on the wire.</summary>
public enum StageErrorCode
{
    Malformed = 1,
    UnknownSession = 2,
    ShapeMismatch = 3,
    LimitExceeded = 4,
    UnknownModel = 5,
    BlocksNotServed = 6,
    ContextOverflow = 7,
    Overloaded = 8,
    NextHopFailed = 9,
    Internal = 10,
}

/// <summary>One message of the stage protocol <c>/inferencemesh/stage/1.0.0</c>; each travels as a varint-prefixed MessagePack map.</summary>
public abstract record StageMessage
{
    /// <summary>The wire name in the map's <c>t</c> field.</summary>
    public abstract string Kind { get; }
}

/// <summary>Client → server: reserve a KV cache for <paramref name="SessionId"/> over <paramref name="Blocks"/> of <paramref name="ModelId"/>.</summary>
/// <param name="MaxLength">Positions the session may reach; the server reserves KV room for that many.</param>
public sealed record OpenSession(ulong RequestId, string SessionId, string ModelId, BlockRange Blocks, int MaxLength) : StageMessage
{
    public override string Kind => "open";
}

/// <summary>Server → client: the session is open.</summary>
public sealed record SessionOpened(ulong RequestId, string SessionId) : StageMessage
{
    public override string Kind => "opened";
}

/// <summary>The next server of a chained step: where to push, and the session it holds there.</summary>
public sealed record RouteHop(string PeerId, IReadOnlyList<string> Addresses, string SessionId);

/// <summary>Opens stage channels to peers: over libp2p streams in a real mesh, over in-memory pipes in tests and benchmarks.</summary>
public interface IStageConnector
{
    /// <summary>Opens a new stage stream to <paramref name="peerId"/>. Safe to cancel.</summary>
    ValueTask<StageChannel> ConnectAsync(string peerId, IReadOnlyList<string> addresses, CancellationToken cancellation);
}

/// <summary>
/// Client → server: run <paramref name="Activation"/> (<c>[1, t, dim]</c>) at positions from <paramref name="StartPosition"/>.
/// With a non-empty <paramref name="Route"/>, the server pushes its output to the first hop instead of replying.
/// </summary>
public sealed record Step(ulong StepId, string SessionId, int StartPosition, TensorData Activation, IReadOnlyList<RouteHop> Route) : StageMessage
{
    public override string Kind => "step";
}

/// <summary>Server → server: a chained step handed on; the last hop sends the <see cref="StepResult"/> to the session's client.</summary>
public sealed record Push(ulong StepId, string SessionId, int StartPosition, TensorData Activation, IReadOnlyList<RouteHop> Route) : StageMessage
{
    public override string Kind => "push";
}

/// <summary>
/// Server → client: the output activation of a step after block <paramref name="BlockEnd"/> (exclusive). In a
/// chained step every server sends one, so the client keeps each span's inputs to replay after a failure;
/// the client waits only for the one that ends the route.
/// </summary>
public sealed record StepResult(ulong StepId, string SessionId, int BlockEnd, TensorData Activation) : StageMessage
{
    public override string Kind => "result";
}

/// <summary>Client → server: free the session's KV cache.</summary>
public sealed record CloseSession(string SessionId) : StageMessage
{
    public override string Kind => "close";
}

/// <summary>Either side: the request with <paramref name="RequestId"/> (a step or open id; 0 when none applies) failed.</summary>
public sealed record StageError(ulong RequestId, string SessionId, StageErrorCode Code, string Message) : StageMessage
{
    public override string Kind => "error";
}
