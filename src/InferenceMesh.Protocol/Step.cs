using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>
/// Client → first server, or server → next server of a chained route: run <paramref name="Activation"/>
/// (<c>[1, t, dim]</c>) at positions from <paramref name="StartPosition"/>. The server replies to the session's client
/// with a <see cref="StepResult"/>; with a non-empty <paramref name="Route"/> it also sends its output to the first hop,
/// as a <see cref="Step"/> for that hop's session carrying the rest of the route.
/// </summary>
public sealed record Step(ulong StepId, string SessionId, int StartPosition, TensorData Activation, IReadOnlyList<RouteHop> Route) : StageMessage
{
    public override string Kind => "step";
}
