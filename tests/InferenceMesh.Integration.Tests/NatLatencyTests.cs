using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// A measurement, not a check (set <c>INFERENCEMESH_NAT_BENCH=1</c>): time to first token and the relay's bytes per token
/// for a client in home D of a <see cref="NatTopology"/> and one stories260K server of every block, either in home A (mapped
/// by UPnP, dialled directly) or private in home B: through the relay (the client does not listen, so no hole punch), or
/// punched (the client runs <c>prompt --listen</c>, so the server's DCUtR makes the client's stream direct before it opens).
/// Every link has a 20 ms one-way delay, emulated in user space: each process delays what it sends on stage streams by
/// 20 ms (<c>--link-delay</c>), and the relay sits behind <c>delay_forwarder.py</c>, which adds 10 ms each way to every
/// connection to it, so a relayed hop (two connections) gets the relay's extra 20 ms link. The punched path skips the
/// forwarder (behind it the relay would observe the forwarder's address, not the NATs', and no punch could work). Needs root and the tools
/// <see cref="PortMappingTests"/> names, and python3.
/// </summary>
public sealed class NatLatencyTests(ITestOutputHelper output)
{
    private const int Runs = 3;
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");

    private static readonly Lazy<string> Split = new(() =>
    {
        var target = Path.Combine(TestModels.NewTempDirectory("nat-bench"), "model");
        ModelStore.Split(Path.Combine(TestModels.Stories260K, "model.onnx"), n => BlockRange.SplitEvenly(n, n), target);
        return target;
    });

    [SkippableTheory]
    [InlineData("direct")]
    [InlineData("relayed")]
    [InlineData("punched")]
    public async Task TimeToFirstTokenAndRelayBytesPerTokenWith20MsLinks(string path)
    {
        Skip.If(Environment.GetEnvironmentVariable("INFERENCEMESH_NAT_BENCH") != "1", "a measurement, not a check: set INFERENCEMESH_NAT_BENCH=1 to run it");
        PortMappingTests.SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        var relay = net.StartCollected(net.Public, "dotnet", Cli, "node", "--listen", $"/ip4/{NatTopology.PublicAddress}/tcp/4002", "--relay",
            "--port-map", "off", "--autonat-interval", "off", "--metrics-url", $"http://{NatTopology.PublicAddress}:9464/metrics/");
        var relayId = (await relay.WaitForEventAsync("ready")).GetProperty("peerId").GetString();
        await net.StartDelayForwarderAsync(4001, 4002, 10);
        // A hole punch needs the address the relay observes, and behind the forwarder the relay observes the forwarder: the
        // punched run reaches the relay directly (only DCUtR's exchange and the session's set-up cross it; stage streams keep
        // their 20 ms in user space).
        var relayAddress = $"/ip4/{NatTopology.PublicAddress}/tcp/{(path == "punched" ? 4002 : 4001)}/p2p/{relayId}";

        var home = path == "direct" ? net.HomeA : net.HomeB;
        string[] listen = path == "punched" ? ["--listen", "/ip4/0.0.0.0/tcp/4003"] : [];
        string[] reach = path == "direct" ? ["--port-map", "upnp"] : ["--port-map", "off", "--private", "--relay-via", relayAddress];
        var server = net.StartCollected(home.Host, "dotnet", [Cli, "node", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relayAddress,
            "--model", Split.Value, "--blocks", "0:5", "--autonat-interval", "off", "--link-delay", "20ms", .. reach]);
        if (path == "direct") await server.WaitForEventAsync("address", e => e.GetProperty("kind").GetString() == "mapped", 60);
        else await server.WaitForEventAsync("ready", seconds: 60);

        for (var run = 1; run <= Runs; run++)
        {
            var before = await RelayBytesAsync(net);
            var (code, stdout, stderr) = await net.ExecAsync(net.HomeD.Host, "dotnet", [Cli, "prompt", "", "--bootstrap", relayAddress, "--model", Split.Value,
                "--steps", "256", "--json", "--link-delay", "20ms", .. listen]);
            Assert.True(code == 0, $"prompt failed ({code}): {stdout} {stderr}");
            var relayed = await RelayBytesAsync(net) - before;
            var result = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal(TestModels.Stories260KReferenceText, result.GetProperty("text").GetString());
            var tokens = result.GetProperty("generatedTokens").GetInt32();
            var first = TimeSpan.Parse(result.GetProperty("timeToFirstToken").GetString()!, CultureInfo.InvariantCulture);
            var elapsed = TimeSpan.Parse(result.GetProperty("elapsed").GetString()!, CultureInfo.InvariantCulture);
            var line = string.Create(CultureInfo.InvariantCulture,
                $"| {path} | {run} | {first.TotalMilliseconds:F0} ms | {elapsed.TotalMilliseconds / tokens:F1} ms | {tokens} | {relayed:N0} B | {(double)relayed / tokens:F0} B |");
            output.WriteLine(line);
            Console.WriteLine(line);
            var connection = Assert.Single(result.GetProperty("route").EnumerateArray()).GetProperty("connection").GetString();
            Assert.Equal(path == "relayed" ? "relayed" : "direct", connection);
            if (path == "direct") Assert.Equal(0, relayed);
            else if (path == "relayed") Assert.True(relayed > 0, "nothing went through the relay");
        }
    }

    /// <summary>The relay's <c>inferencemesh_relay_bytes_total</c>, scraped from its metrics endpoint inside the public namespace.</summary>
    private static async Task<long> RelayBytesAsync(NatTopology net)
    {
        var (code, text, error) = await net.ExecAsync(net.Public, "curl", "-sf", $"http://{NatTopology.PublicAddress}:9464/metrics/");
        Assert.True(code == 0, $"scraping the relay's metrics failed: {error}");
        var match = Regex.Match(text, @"^inferencemesh_relay_bytes_total (\S+)$", RegexOptions.Multiline);
        Assert.True(match.Success, text);
        return (long)double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
