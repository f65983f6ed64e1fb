using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security;
using System.Text;

namespace InferenceMesh.P2P.Nat;

/// <summary>
/// UPnP IGD v1/v2 client: finds the gateway by SSDP M-SEARCH, fetches its device description, and speaks SOAP to its
/// WANIPConnection (or WANPPPConnection) service: <c>GetExternalIPAddress</c>, <c>AddPortMapping</c> (falling back to
/// <c>AddAnyPortMapping</c> on IGDv2 when the port is taken, and to a permanent lease where a v1 router allows only those)
/// and <c>DeletePortMapping</c>. SSDP answers, descriptions and SOAP bodies are size-capped
/// (<see cref="PortMappingClientOptions"/>), parsed without DTDs, and must stay on the host that answered. Thread-safe; dispose to release the HTTP client.
/// </summary>
public sealed class UpnpClient : IPortMappingClient, IDisposable
{
    private static readonly string[] SearchTargets =
    [
        "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
    ];

    private readonly PortMappingClientOptions _options;
    private readonly HttpClient _http;
    private readonly SemaphoreSlim _discovering = new(1, 1);
    private UpnpService? _service;

    public UpnpClient(PortMappingClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _http = new HttpClient(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false }) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <inheritdoc/>
    public PortMappingProtocol Protocol => PortMappingProtocol.Upnp;

    /// <summary>Finds the IGD's WAN connection service (once; later calls reuse it). Safe to cancel.</summary>
    public async Task<UpnpService> DiscoverAsync(CancellationToken cancellationToken)
    {
        await _discovering.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_service is { } known)
                return known;
            var location = await SearchAsync(cancellationToken).ConfigureAwait(false);
            var description = await GetAsync(location, cancellationToken).ConfigureAwait(false);
            return _service = UpnpXml.FindWanService(description, location);
        }
        finally
        {
            _discovering.Release();
        }
    }

    /// <summary>The IGD's external IPv4 address (<c>GetExternalIPAddress</c>). Safe to cancel.</summary>
    public async Task<IPAddress> GetExternalAddressAsync(CancellationToken cancellationToken)
    {
        var service = await DiscoverAsync(cancellationToken).ConfigureAwait(false);
        var result = await InvokeAsync(service, "GetExternalIPAddress", [], cancellationToken).ConfigureAwait(false);
        if (!result.TryGetValue("NewExternalIPAddress", out var text) || !IPAddress.TryParse(text, out var address)
            || address.AddressFamily != AddressFamily.InterNetwork || address.Equals(IPAddress.Any))
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SOAP GetExternalIPAddress: '{text}' is not an IPv4 address");
        return address;
    }

    /// <inheritdoc/>
    public async Task<PortMapping> MapAsync(int internalPort, int suggestedExternalPort, TimeSpan lifetime, CancellationToken cancellationToken)
    {
        var service = await DiscoverAsync(cancellationToken).ConfigureAwait(false);
        var gateway = await ResolveAsync(service.ControlUrl.Host, cancellationToken).ConfigureAwait(false);
        var client = NatNetwork.LocalAddressTowards(gateway);
        var external = await GetExternalAddressAsync(cancellationToken).ConfigureAwait(false);
        var seconds = (long)Math.Clamp(lifetime.TotalSeconds, 1, 604800);
        var port = suggestedExternalPort;
        try
        {
            await AddAsync(service, port, client, internalPort, seconds, cancellationToken).ConfigureAwait(false);
        }
        catch (PortMappingException e) when (e.GatewayCode == 725)
        {
            // OnlyPermanentLeasesSupported (IGDv1 routers): ask again for a lease without expiry; it is deleted on exit.
            seconds = 0;
            await AddAsync(service, port, client, internalPort, seconds, cancellationToken).ConfigureAwait(false);
        }
        catch (PortMappingException e) when (e.GatewayCode is 718 or 728 && service.IsVersion2)
        {
            // ConflictInMappingEntry / NoPortMapsAvailable: let an IGDv2 router pick the port.
            var any = await InvokeAsync(service, "AddAnyPortMapping", MappingArguments(port, client, internalPort, seconds), cancellationToken).ConfigureAwait(false);
            if (!any.TryGetValue("NewReservedPort", out var reserved) || !int.TryParse(reserved, out port) || port is < 1 or > 65535)
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"SOAP AddAnyPortMapping: reserved port '{reserved}' is not a port");
        }
        return new PortMapping
        {
            Protocol = PortMappingProtocol.Upnp, Gateway = gateway, InternalAddress = client, InternalPort = internalPort,
            ExternalAddress = external, ExternalPort = port, Lifetime = TimeSpan.FromSeconds(seconds), Service = service,
        };
    }

    /// <inheritdoc/>
    public Task<PortMapping> RenewAsync(PortMapping mapping, TimeSpan lifetime, CancellationToken cancellationToken) =>
        MapAsync(mapping.InternalPort, mapping.ExternalPort, lifetime, cancellationToken);

    /// <inheritdoc/>
    public async Task UnmapAsync(PortMapping mapping, CancellationToken cancellationToken)
    {
        var service = mapping.Service ?? await DiscoverAsync(cancellationToken).ConfigureAwait(false);
        await InvokeAsync(service, "DeletePortMapping",
            [("NewRemoteHost", ""), ("NewExternalPort", mapping.ExternalPort.ToString()), ("NewProtocol", "TCP")], cancellationToken).ConfigureAwait(false);
    }

    public void Dispose()
    {
        _http.Dispose();
        _discovering.Dispose();
    }

    private Task AddAsync(UpnpService service, int port, IPAddress client, int internalPort, long seconds, CancellationToken cancellationToken) =>
        InvokeAsync(service, "AddPortMapping", MappingArguments(port, client, internalPort, seconds), cancellationToken);

    private (string, string)[] MappingArguments(int externalPort, IPAddress client, int internalPort, long seconds) =>
    [
        ("NewRemoteHost", ""), ("NewExternalPort", externalPort.ToString()), ("NewProtocol", "TCP"),
        ("NewInternalPort", internalPort.ToString()), ("NewInternalClient", client.ToString()), ("NewEnabled", "1"),
        ("NewPortMappingDescription", _options.Description), ("NewLeaseDuration", seconds.ToString()),
    ];

    private static async Task<IPAddress> ResolveAsync(string host, CancellationToken cancellationToken) =>
        IPAddress.TryParse(host, out var address) ? address
            : (await Dns.GetHostAddressesAsync(host, AddressFamily.InterNetwork, cancellationToken).ConfigureAwait(false)).FirstOrDefault()
              ?? throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"IGD host {host} does not resolve");

    private async Task<Uri> SearchAsync(CancellationToken cancellationToken)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        socket.Bind(new IPEndPoint(IPAddress.Any, 0));
        foreach (var st in SearchTargets)
        {
            var request = System.Text.Encoding.ASCII.GetBytes($"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n");
            try
            {
                await socket.SendToAsync(request, SocketFlags.None, _options.SsdpEndpoint, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException e)
            {
                throw new PortMappingException(PortMappingErrorCode.NoGateway, $"SSDP: cannot send M-SEARCH to {_options.SsdpEndpoint}: {e.SocketErrorCode}", inner: e);
            }
        }
        using var timer = new CancellationTokenSource(_options.DiscoveryTimeout, _options.Time);
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        var buffer = new byte[SsdpReply.MaxBytes + 1];
        PortMappingException? firstBad = null;
        try
        {
            while (true)
            {
                var received = await socket.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), wait.Token).ConfigureAwait(false);
                var sender = ((IPEndPoint)received.RemoteEndPoint).Address;
                try
                {
                    return SsdpReply.Parse(buffer.AsSpan(0, received.ReceivedBytes), sender).Location;
                }
                catch (PortMappingException e)
                {
                    // Other devices answer M-SEARCH too; a bad answer is remembered, and the first good one wins.
                    firstBad ??= e;
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw firstBad ?? new PortMappingException(PortMappingErrorCode.NoGateway, $"SSDP: no Internet gateway answered within {_options.DiscoveryTimeout.TotalSeconds:F1} s");
        }
        catch (SocketException e)
        {
            throw new PortMappingException(PortMappingErrorCode.NoGateway, $"SSDP: {e.SocketErrorCode}", inner: e);
        }
    }

    private async Task<byte[]> GetAsync(Uri location, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, location);
        var (ok, body) = await SendAsync(request, _options.MaxDescriptionBytes, "IGD description", cancellationToken).ConfigureAwait(false);
        if (!ok)
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"IGD description: {location} did not answer 200");
        return body;
    }

    private async Task<IReadOnlyDictionary<string, string>> InvokeAsync(UpnpService service, string action, (string Name, string Value)[] arguments, CancellationToken cancellationToken)
    {
        var body = new StringBuilder()
            .Append("<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>")
            .Append($"<u:{action} xmlns:u=\"{service.ServiceType}\">");
        foreach (var (name, value) in arguments)
            body.Append($"<{name}>{SecurityElement.Escape(value)}</{name}>");
        body.Append($"</u:{action}></s:Body></s:Envelope>");
        using var request = new HttpRequestMessage(HttpMethod.Post, service.ControlUrl) { Content = new StringContent(body.ToString(), System.Text.Encoding.UTF8) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("text/xml; charset=\"utf-8\"");
        request.Headers.TryAddWithoutValidation("SOAPAction", $"\"{service.ServiceType}#{action}\"");
        var (ok, response) = await SendAsync(request, _options.MaxSoapBytes, $"SOAP {action}", cancellationToken).ConfigureAwait(false);
        return UpnpXml.ParseResponse(response, action, ok);
    }

    private async Task<(bool Ok, byte[] Body)> SendAsync(HttpRequestMessage request, int maxBytes, string what, CancellationToken cancellationToken)
    {
        using var timer = new CancellationTokenSource(_options.HttpTimeout, _options.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
            if (response.Content.Headers.ContentLength > maxBytes)
                throw new PortMappingException(PortMappingErrorCode.ReplyTooLarge, $"{what}: {response.Content.Headers.ContentLength} bytes exceed {maxBytes}");
            await using var stream = await response.Content.ReadAsStreamAsync(linked.Token).ConfigureAwait(false);
            var buffer = new byte[maxBytes + 1];
            var length = 0;
            int n;
            while (length < buffer.Length && (n = await stream.ReadAsync(buffer.AsMemory(length), linked.Token).ConfigureAwait(false)) > 0)
                length += n;
            if (length > maxBytes)
                throw new PortMappingException(PortMappingErrorCode.ReplyTooLarge, $"{what}: more than {maxBytes} bytes");
            var ok = response.StatusCode == HttpStatusCode.OK;
            if (!ok && response.StatusCode != HttpStatusCode.InternalServerError)
                throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"{what}: HTTP {(int)response.StatusCode}");
            return (ok, buffer[..length]);
        }
        catch (OperationCanceledException e) when (!cancellationToken.IsCancellationRequested)
        {
            throw new PortMappingException(PortMappingErrorCode.Timeout, $"{what}: no answer from {request.RequestUri} within {_options.HttpTimeout.TotalSeconds:F1} s", inner: e);
        }
        catch (HttpRequestException e)
        {
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"{what}: {e.Message}", inner: e);
        }
        catch (IOException e)
        {
            throw new PortMappingException(PortMappingErrorCode.InvalidReply, $"{what}: {e.Message}", inner: e);
        }
    }
}
