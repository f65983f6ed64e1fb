using System.Net;
using System.Net.Sockets;

namespace InferenceMesh.P2P.Tests.Nat;

/// <summary>
/// A hostile stand-in for a home router on loopback: a UDP responder (NAT-PMP/PCP, or SSDP) that answers each datagram with bytes a test
/// chooses from the request, and an HTTP responder that answers each request with a raw response chosen from its path.
/// </summary>
internal sealed class FakeGateway : IAsyncDisposable
{
    private readonly UdpClient _udp = new(new IPEndPoint(IPAddress.Loopback, 0));
    private readonly TcpListener _http = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _udpLoop;
    private readonly Task _httpLoop;

    public FakeGateway(Func<byte[], byte[]?> udp, Func<string, string, byte[]>? http = null)
    {
        _udpLoop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var received = await _udp.ReceiveAsync(_stop.Token);
                    if (udp(received.Buffer) is { } reply) await _udp.SendAsync(reply, received.RemoteEndPoint, _stop.Token);
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
        _http.Start();
        _httpLoop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    using var client = await _http.AcceptTcpClientAsync(_stop.Token);
                    var stream = client.GetStream();
                    var request = await ReadRequestAsync(stream);
                    var line = request.Split("\r\n")[0].Split(' ');
                    var body = request[(request.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
                    var response = http?.Invoke(line.Length > 1 ? line[1] : "/", body) ?? Http(404, "");
                    try
                    {
                        await stream.WriteAsync(response, _stop.Token);
                    }
                    catch (IOException)
                    {
                        // the client gave up reading an oversized answer
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    public int UdpPort => ((IPEndPoint)_udp.Client.LocalEndPoint!).Port;
    public int HttpPort => ((IPEndPoint)_http.LocalEndpoint).Port;
    public string HttpBase => $"http://127.0.0.1:{HttpPort}";

    public static byte[] Http(int status, string body, string contentType = "text/xml") =>
        System.Text.Encoding.UTF8.GetBytes($"HTTP/1.1 {status} X\r\nContent-Type: {contentType}\r\nContent-Length: {System.Text.Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}");

    private static async Task<string> ReadRequestAsync(NetworkStream stream)
    {
        var buffer = new byte[65536];
        var length = 0;
        while (true)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(length));
            if (n == 0) break;
            length += n;
            var text = System.Text.Encoding.UTF8.GetString(buffer, 0, length);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0) continue;
            var header = text[..end];
            var cl = header.Split("\r\n").FirstOrDefault(h => h.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
            var want = cl is null ? 0 : int.Parse(cl["Content-Length:".Length..].Trim());
            if (System.Text.Encoding.UTF8.GetByteCount(text) - end - 4 >= want) return text;
        }
        return System.Text.Encoding.UTF8.GetString(buffer, 0, length);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _http.Stop();
        await Task.WhenAll(_udpLoop, _httpLoop).ContinueWith(_ => { });
        _udp.Dispose();
        _stop.Dispose();
    }
}
