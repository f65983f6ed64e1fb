namespace InferenceMesh.P2P.Relay;

/// <summary>
/// The limits a relay puts on one relayed connection (the spec's <c>Limit</c>): it is closed after
/// <see cref="Duration"/> or once <see cref="Data"/> bytes went through in either direction, whichever comes first.
/// </summary>
/// <param name="Duration">Longest life of the circuit; null for unlimited. Sent in whole seconds.</param>
/// <param name="Data">Most bytes relayed in each direction; null for unlimited.</param>
public sealed record RelayLimit(TimeSpan? Duration, ulong? Data);
