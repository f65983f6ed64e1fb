using System.Net;

namespace InferenceMesh.Gateway;

/// <summary>A request the gateway refuses, with the HTTP status and OpenAI error fields it is answered with.</summary>
public sealed class GatewayException(HttpStatusCode status, string type, string message, string? param = null, string? code = null) : Exception(message)
{
    public HttpStatusCode Status { get; } = status;

    /// <summary>OpenAI's error type, e.g. <c>invalid_request_error</c>.</summary>
    public string Type { get; } = type;

    /// <summary>The request field at fault, if one is.</summary>
    public string? Param { get; } = param;

    /// <summary>A machine-readable code, e.g. <c>model_not_found</c>.</summary>
    public string? Code { get; } = code;
}
