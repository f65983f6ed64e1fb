namespace InferenceMesh.P2P.Relay;

/// <summary>A relay (or the peer reached through it) answered a Circuit Relay v2 request with a status other than OK.</summary>
public sealed class RelayException(RelayStatus status, string message, Exception? inner = null)
    : P2PException(P2PErrorCode.RelayRefused, message, inner)
{
    /// <summary>The status the relay or peer sent.</summary>
    public RelayStatus Status { get; } = status;
}
