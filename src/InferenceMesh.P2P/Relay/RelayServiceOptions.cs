namespace InferenceMesh.P2P.Relay;

/// <summary>
/// Limits of a Circuit Relay v2 relay. The defaults are sized for activation traffic: a generation through a
/// relay moves a few MiB over minutes, which the stock libp2p limits (2 minutes, 128 KiB per circuit) would cut.
/// </summary>
public sealed record RelayServiceOptions
{
    /// <summary>How long a reservation lasts unless renewed (clients renew before it ends).</summary>
    public TimeSpan ReservationTtl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Most reservations held at once.</summary>
    public int MaxReservations { get; init; } = 128;

    /// <summary>Most reservations held at once by peers connecting from one IP address.</summary>
    public int MaxReservationsPerIp { get; init; } = 8;

    /// <summary>Most circuits open at once.</summary>
    public int MaxCircuits { get; init; } = 64;

    /// <summary>Most circuits open at once with one peer at either end.</summary>
    public int MaxCircuitsPerPeer { get; init; } = 8;

    /// <summary>Longest life of a circuit (sent to both ends as the limit's duration); null for unlimited.</summary>
    public TimeSpan? CircuitDuration { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Most bytes relayed in each direction of a circuit (sent as the limit's data); null for unlimited. Default 1 GiB.</summary>
    public ulong? CircuitBytes { get; init; } = 1UL << 30;

    /// <summary>Time for a request to arrive and for the target to answer the stop request.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Addresses put in reservations (where reserving peers are reached); the host's listen addresses when null.</summary>
    public IReadOnlyList<Multiaddr>? AnnounceAddresses { get; init; }
}
