namespace InferenceMesh.P2P.Nat;

/// <summary>A port-mapping request failed; <see cref="Reason"/> says how, <see cref="GatewayCode"/> carries the gateway's own result code when it refused.</summary>
public sealed class PortMappingException : P2PException
{
    public PortMappingException(PortMappingErrorCode reason, string message, int? gatewayCode = null, Exception? inner = null)
        : base(reason switch
        {
            PortMappingErrorCode.Timeout or PortMappingErrorCode.NoGateway => P2PErrorCode.Timeout,
            PortMappingErrorCode.ReplyTooLarge => P2PErrorCode.LimitExceeded,
            _ => P2PErrorCode.ProtocolViolation,
        }, message, inner)
    {
        Reason = reason;
        GatewayCode = gatewayCode;
    }

    /// <summary>What went wrong.</summary>
    public PortMappingErrorCode Reason { get; }

    /// <summary>The NAT-PMP/PCP result code or UPnP <c>errorCode</c> the gateway sent, when it refused; null otherwise.</summary>
    public int? GatewayCode { get; }
}
