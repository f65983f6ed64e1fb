namespace InferenceMesh.P2P;

/// <summary>Machine-readable reason for a <see cref="P2PException"/>; stable across releases.</summary>
public enum P2PErrorCode
{
    /// <summary>Bytes from the wire break a protocol rule (bad version, unknown type, reused id...).</summary>
    ProtocolViolation,
    /// <summary>A length, count or window from the wire or the caller exceeds a configured maximum.</summary>
    LimitExceeded,
    /// <summary>A malformed key, PeerId, multiaddr or other encoding.</summary>
    InvalidEncoding,
    /// <summary>The Noise handshake failed: bad message, failed decryption or bad identity signature.</summary>
    HandshakeFailed,
    /// <summary>The remote authenticated as another PeerId than the one dialled.</summary>
    PeerIdMismatch,
    /// <summary>multistream-select found no protocol both sides speak.</summary>
    ProtocolNotSupported,
    /// <summary>A stream was reset by either side.</summary>
    StreamReset,
    /// <summary>The connection or session is closed (GoAway, EOF or local dispose).</summary>
    ConnectionClosed,
    /// <summary>A step did not finish within its configured time.</summary>
    Timeout,
    /// <summary>No transport can dial or listen on the given multiaddr.</summary>
    NoTransport,
    /// <summary>A key file is missing, unreadable or too widely readable.</summary>
    KeyFile,
    /// <summary>None of a peer's addresses could be dialled.</summary>
    DialFailed,
    /// <summary>A Circuit Relay v2 relay, or the peer reached through it, refused a reservation or circuit (see <see cref="Relay.RelayException.Status"/>).</summary>
    RelayRefused,
}
