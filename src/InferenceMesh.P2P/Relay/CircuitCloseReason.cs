namespace InferenceMesh.P2P.Relay;

/// <summary>Why a relay ended a circuit.</summary>
public enum CircuitCloseReason
{
    /// <summary>Both ends closed their side, or one end reset the stream.</summary>
    Closed,
    /// <summary>More bytes than <see cref="RelayLimit.Data"/> went one way.</summary>
    DataLimit,
    /// <summary>The circuit lived longer than <see cref="RelayLimit.Duration"/>.</summary>
    DurationLimit,
    /// <summary>The relay is stopping.</summary>
    RelayStopping,
}
