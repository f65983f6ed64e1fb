namespace InferenceMesh.P2P.Nat;

/// <summary>AutoNAT v1 limits and timing; defaults follow go-libp2p's service. Times as <see cref="TimeSpan"/>.</summary>
public sealed record AutoNatOptions
{
    /// <summary>Server: at most this many addresses dialled back per request.</summary>
    public int MaxDialBackAddresses { get; init; } = 16;

    /// <summary>Server: a dial back that takes longer fails.</summary>
    public TimeSpan DialBackTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Server: dial-back requests served per <see cref="RateWindow"/> from all peers; more are refused.</summary>
    public int GlobalRequestsPerWindow { get; init; } = 30;

    /// <summary>Server: dial-back requests served per <see cref="RateWindow"/> from one peer; more are refused.</summary>
    public int PeerRequestsPerWindow { get; init; } = 3;

    /// <summary>Server: the window of the rate limits.</summary>
    public TimeSpan RateWindow { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Largest AutoNAT message read, in bytes, either side.</summary>
    public int MaxMessageBytes { get; init; } = 4096;

    /// <summary>Client: agreeing answers needed to call the node public or private (the spec suggests 3).</summary>
    public int Confirmations { get; init; } = 3;

    /// <summary>Client: servers asked per check, at most.</summary>
    public int MaxServersPerCheck { get; init; } = 5;

    /// <summary>Client: a server that has not answered within this time counts as no answer.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Clock of the rate limits and timeouts.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}
