using System.Buffers.Binary;
using System.Net;
using InferenceMesh.P2P.Nat;

namespace InferenceMesh.P2P.Tests.Nat;

/// <summary>
/// Malformed, oversized, refusing and lying NAT-PMP, PCP, SSDP and SOAP answers from a fake gateway on loopback: each ends in a
/// <see cref="PortMappingException"/> with the right reason, never another exception or a hang.
/// </summary>
public sealed class PortMappingHostileInputTests
{
    private static PortMappingClientOptions Options(FakeGateway gateway) => new()
    {
        Gateway = IPAddress.Loopback, GatewayPort = gateway.UdpPort, InitialTimeout = TimeSpan.FromMilliseconds(200), Attempts = 2,
        SsdpEndpoint = new IPEndPoint(IPAddress.Loopback, gateway.UdpPort), DiscoveryTimeout = TimeSpan.FromSeconds(5),
        HttpTimeout = TimeSpan.FromSeconds(2),
    };

    private static async Task<PortMappingException> NatPmpFails(Func<byte[], byte[]?> answer)
    {
        await using var gateway = new FakeGateway(answer);
        return await Assert.ThrowsAsync<PortMappingException>(() => new NatPmpClient(Options(gateway)).MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default));
    }

    private static byte[] NatPmpReply(byte opcode, ushort result, int length, Action<byte[]>? fill = null)
    {
        var reply = new byte[length];
        reply[1] = opcode;
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(2), result);
        fill?.Invoke(reply);
        return reply;
    }

    private static byte[]? GoodNatPmp(byte[] request) => request[1] == 0
        ? NatPmpReply(128, 0, 12, r => new byte[] { 11, 13, 0, 2 }.CopyTo(r, 8))
        : NatPmpReply(130, 0, 16, r => { request.AsSpan(4, 4).CopyTo(r.AsSpan(8)); BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(12), 60); });

    [Fact]
    public async Task NatPmpWellFormedAnswersMapThePort()
    {
        await using var gateway = new FakeGateway(GoodNatPmp);
        var mapping = await new NatPmpClient(Options(gateway)).MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default);
        Assert.Equal((IPAddress.Parse("11.13.0.2"), 4001, TimeSpan.FromSeconds(60)), (mapping.ExternalAddress, mapping.ExternalPort, mapping.Lifetime));
    }

    [Fact]
    public async Task NatPmpMalformedAnswersAreTypedErrors()
    {
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await NatPmpFails(_ => [0, 128, 0])).Reason);
        Assert.Equal(PortMappingErrorCode.UnsupportedVersion, (await NatPmpFails(_ => NatPmpReply(128, 0, 12, r => r[0] = 1))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await NatPmpFails(_ => NatPmpReply(129, 0, 12))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await NatPmpFails(_ => NatPmpReply(128, 0, 16))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await NatPmpFails(_ => NatPmpReply(128, 0, 12))).Reason); // external address 0.0.0.0
        Assert.Equal(PortMappingErrorCode.ReplyTooLarge, (await NatPmpFails(_ => new byte[1500])).Reason);
        Assert.Equal(PortMappingErrorCode.Timeout, (await NatPmpFails(_ => null)).Reason);
        var refused = await NatPmpFails(_ => NatPmpReply(128, 2, 12));
        Assert.Equal((PortMappingErrorCode.Refused, 2), (refused.Reason, refused.GatewayCode));
        // A map answer granting port 0 for a live lease is not a mapping.
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await NatPmpFails(r => r[1] == 0 ? GoodNatPmp(r) : NatPmpReply(130, 0, 16, x =>
        {
            r.AsSpan(4, 2).CopyTo(x.AsSpan(8));
            BinaryPrimitives.WriteUInt32BigEndian(x.AsSpan(12), 60);
        }))).Reason);
    }

    private static byte[] PcpReply(byte[] request, Action<byte[]>? lie = null, byte result = 0)
    {
        var reply = new byte[60];
        reply[0] = 2;
        reply[1] = 0x81;
        reply[3] = result;
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(4), 120);
        request.AsSpan(24, 36).CopyTo(reply.AsSpan(24));
        IPAddress.Parse("11.13.0.2").MapToIPv6().TryWriteBytes(reply.AsSpan(44, 16), out _);
        lie?.Invoke(reply);
        return reply;
    }

    private static async Task<PortMappingException> PcpFails(Func<byte[], byte[]?> answer)
    {
        await using var gateway = new FakeGateway(answer);
        return await Assert.ThrowsAsync<PortMappingException>(() => new PcpClient(Options(gateway)).MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default));
    }

    [Fact]
    public async Task PcpWellFormedAnswerMapsAndRenewsWithTheSameNonce()
    {
        var nonces = new List<string>();
        await using var gateway = new FakeGateway(r => { nonces.Add(Convert.ToHexString(r, 24, 12)); return PcpReply(r); });
        var client = new PcpClient(Options(gateway));
        var mapping = await client.MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default);
        await client.RenewAsync(mapping, TimeSpan.FromMinutes(1), default);
        Assert.Equal((IPAddress.Parse("11.13.0.2"), 4001, TimeSpan.FromSeconds(120)), (mapping.ExternalAddress, mapping.ExternalPort, mapping.Lifetime));
        Assert.Equal(2, nonces.Count);
        Assert.Equal(nonces[0], nonces[1]);
    }

    [Fact]
    public async Task PcpMalformedAnswersAreTypedErrors()
    {
        Assert.Equal(PortMappingErrorCode.UnsupportedVersion, (await PcpFails(_ => NatPmpReply(128, 1, 8))).Reason);
        Assert.Equal(PortMappingErrorCode.UnsupportedVersion, (await PcpFails(r => PcpReply(r, x => x[0] = 3))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await PcpFails(r => PcpReply(r, x => x[1] = 0x01))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await PcpFails(r => PcpReply(r)[..58])).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await PcpFails(r => PcpReply(r)[..40])).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await PcpFails(r => PcpReply(r, x => x[36] = 17))).Reason); // UDP, not TCP
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await PcpFails(r => PcpReply(r, x => x.AsSpan(44, 16).Fill(0x20)))).Reason); // not IPv4
        Assert.Equal(PortMappingErrorCode.ReplyTooLarge, (await PcpFails(_ => new byte[1104])).Reason);
        // An answer with another nonce is not ours and is ignored, as the RFC asks: the request times out.
        Assert.Equal(PortMappingErrorCode.Timeout, (await PcpFails(r => PcpReply(r, x => x[24] ^= 0xFF))).Reason);
        var refused = await PcpFails(r => PcpReply(r, result: 2));
        Assert.Equal((PortMappingErrorCode.Refused, 2), (refused.Reason, refused.GatewayCode));
    }

    [Fact]
    public async Task SeededRandomNatPmpAndPcpAnswersEndInTypedErrors()
    {
        var random = new Random(1306);
        for (var i = 0; i < 40; i++)
        {
            var length = random.Next(0, 80);
            await using var gateway = new FakeGateway(r =>
            {
                var reply = r[0] == 2 ? PcpReply(r) : GoodNatPmp(r)!;
                var bytes = reply.Concat(new byte[Math.Max(0, length - reply.Length)]).Take(length).ToArray();
                for (var k = 0; k < 3 && bytes.Length > 0; k++) bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                return bytes;
            });
            // Short waits: an answer the client ignores (another nonce or port) ends in a Timeout, which is as typed as any.
            var options = Options(gateway) with { InitialTimeout = TimeSpan.FromMilliseconds(20) };
            foreach (IPortMappingClient client in new IPortMappingClient[] { new NatPmpClient(options), new PcpClient(options) })
            {
                try
                {
                    var mapping = await client.MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default);
                    Assert.InRange(mapping.ExternalPort, 1, 65535);
                }
                catch (PortMappingException e)
                {
                    Assert.True(Enum.IsDefined(e.Reason));
                }
            }
        }
    }

    [Fact]
    public void SsdpAnswersAreValidated()
    {
        var sender = IPAddress.Parse("192.168.1.1");
        PortMappingErrorCode Reason(string text) => Assert.Throws<PortMappingException>(() => SsdpReply.Parse(System.Text.Encoding.UTF8.GetBytes(text), sender)).Reason;
        const string St = "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n";
        var good = SsdpReply.Parse(System.Text.Encoding.UTF8.GetBytes($"HTTP/1.1 200 OK\r\n{St}LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n\r\n"), sender);
        Assert.Equal(new Uri("http://192.168.1.1:5000/rootDesc.xml"), good.Location);
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason($"HTTP/1.1 404 Not Found\r\n{St}LOCATION: http://192.168.1.1/\r\n\r\n"));
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason($"NOTIFY * HTTP/1.1\r\n{St}\r\n"));
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason($"HTTP/1.1 200 OK\r\n{St}\r\n"));
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason($"HTTP/1.1 200 OK\r\n{St}LOCATION: file:///etc/passwd\r\n\r\n"));
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason($"HTTP/1.1 200 OK\r\n{St}no colon here\r\n\r\n"));
        Assert.Equal(PortMappingErrorCode.InvalidReply, Reason("HTTP/1.1 200 OK\r\n" + string.Concat(Enumerable.Repeat("X: y\r\n", 40)) + "\r\n"));
        Assert.Equal(PortMappingErrorCode.UnexpectedSource, Reason($"HTTP/1.1 200 OK\r\n{St}LOCATION: http://10.9.9.9:5000/rootDesc.xml\r\n\r\n"));
        Assert.Equal(PortMappingErrorCode.ReplyTooLarge, Assert.Throws<PortMappingException>(() => SsdpReply.Parse(new byte[3000], sender)).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, Assert.Throws<PortMappingException>(() => SsdpReply.Parse([0xC3, 0x28, 0xFF], sender)).Reason);
    }

    private const string Description = """
        <?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><serviceList><service>
        <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>CONTROL</controlURL>
        </service></serviceList></device></root>
        """;

    private static string Soap(string inner) =>
        $"<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>{inner}</s:Body></s:Envelope>";

    private static string Fault(int code) => Soap($"<s:Fault><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>{code}</errorCode><errorDescription>no</errorDescription></UPnPError></detail></s:Fault>");

    /// <summary>Runs UPnP mapping against a fake IGD whose description and SOAP answers the test gives.</summary>
    private static async Task<PortMapping> MapByUpnp(Func<FakeGateway, string> description, Func<string, byte[]> soap)
    {
        FakeGateway? self = null;
        await using var gateway = self = new FakeGateway(
            _ => System.Text.Encoding.UTF8.GetBytes($"HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: {self!.HttpBase}/rootDesc.xml\r\n\r\n"),
            (path, body) => path == "/rootDesc.xml" ? FakeGateway.Http(200, description(self!)) : soap(body));
        using var client = new UpnpClient(Options(gateway));
        return await client.MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default);
    }

    private static async Task<PortMappingException> UpnpFails(Func<FakeGateway, string> description, Func<string, byte[]> soap) =>
        await Assert.ThrowsAsync<PortMappingException>(() => MapByUpnp(description, soap));

    private static byte[] GoodSoap(string body) => FakeGateway.Http(200, body.Contains("GetExternalIPAddress")
        ? Soap("<u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewExternalIPAddress>11.13.0.2</NewExternalIPAddress></u:GetExternalIPAddressResponse>")
        : Soap("<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"/>"));

    [Fact]
    public async Task UpnpWellFormedGatewayMapsThePort()
    {
        var mapping = await MapByUpnp(_ => Description.Replace("CONTROL", "/ctl/IPConn"), GoodSoap);
        Assert.Equal((IPAddress.Parse("11.13.0.2"), 4001), (mapping.ExternalAddress, mapping.ExternalPort));
        Assert.Equal("urn:schemas-upnp-org:service:WANIPConnection:1", mapping.Service!.ServiceType);
    }

    [Fact]
    public async Task UpnpMalformedDescriptionsAndSoapAnswersAreTypedErrors()
    {
        string Good(FakeGateway _) => Description.Replace("CONTROL", "/ctl/IPConn");
        // A DTD (the billion-laughs shape) is refused, not expanded.
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(_ => "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]><root>&b;</root>", GoodSoap)).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(_ => "<root><unclosed>", GoodSoap)).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(_ => "<root/>", GoodSoap)).Reason);
        Assert.Equal(PortMappingErrorCode.ReplyTooLarge, (await UpnpFails(_ => "<root>" + new string('x', 70_000) + "</root>", GoodSoap)).Reason);
        Assert.Equal(PortMappingErrorCode.UnexpectedSource, (await UpnpFails(_ => Description.Replace("CONTROL", "http://10.9.9.9/ctl"), GoodSoap)).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(Good, _ => FakeGateway.Http(200, Soap("<nothing/>")))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(Good, b => b.Contains("GetExternalIPAddress")
            ? FakeGateway.Http(200, Soap("<u:GetExternalIPAddressResponse xmlns:u=\"x\"><NewExternalIPAddress>not-an-ip</NewExternalIPAddress></u:GetExternalIPAddressResponse>"))
            : GoodSoap(b))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(Good, _ => FakeGateway.Http(403, ""))).Reason);
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(Good, _ => System.Text.Encoding.UTF8.GetBytes("garbage\r\n\r\n"))).Reason);
        Assert.Equal(PortMappingErrorCode.ReplyTooLarge, (await UpnpFails(Good, _ => FakeGateway.Http(200, new string(' ', 20_000)))).Reason);
        var refused = await UpnpFails(Good, b => b.Contains("AddPortMapping") ? FakeGateway.Http(500, Fault(718)) : GoodSoap(b));
        Assert.Equal((PortMappingErrorCode.Refused, 718), (refused.Reason, refused.GatewayCode));
        Assert.Equal(PortMappingErrorCode.InvalidReply, (await UpnpFails(Good, b => FakeGateway.Http(500, Soap("<s:Fault/>")))).Reason);
    }

    [Fact]
    public async Task UpnpWithoutAnyGatewayIsNoGateway()
    {
        await using var gateway = new FakeGateway(_ => null);
        using var client = new UpnpClient(Options(gateway) with { DiscoveryTimeout = TimeSpan.FromMilliseconds(200) });
        Assert.Equal(PortMappingErrorCode.NoGateway, (await Assert.ThrowsAsync<PortMappingException>(() => client.MapAsync(4001, 4001, TimeSpan.FromMinutes(1), default))).Reason);
    }
}
