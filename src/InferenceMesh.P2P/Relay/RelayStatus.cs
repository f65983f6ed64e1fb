namespace InferenceMesh.P2P.Relay;

/// <summary>The <c>Status</c> of Circuit Relay v2 (libp2p/specs relay/circuit-v2.md), with its wire values.</summary>
public enum RelayStatus
{
    /// <summary>No status was sent (a protobuf default; never valid in a STATUS message).</summary>
    Unused = 0,
    Ok = 100,
    ReservationRefused = 200,
    ResourceLimitExceeded = 201,
    PermissionDenied = 202,
    ConnectionFailed = 203,
    NoReservation = 204,
    MalformedMessage = 400,
    UnexpectedMessage = 401,
}
