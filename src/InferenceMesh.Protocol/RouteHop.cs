namespace InferenceMesh.Protocol;

/// <summary>The next server of a chained step: where to send the chained <see cref="Step"/>, and the session it holds there.</summary>
public sealed record RouteHop(string PeerId, IReadOnlyList<string> Addresses, string SessionId);
