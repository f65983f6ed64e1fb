using System.Diagnostics;
using System.Text.Json;

namespace InferenceMesh.Integration.Tests;

/// <summary><c>node --relay</c>, <c>node --private --relay-via</c> and <c>ping</c> of a <c>/p2p-circuit</c> address, as processes on loopback.</summary>
public sealed class RelayCliTests
{
    private static async Task<(Process Process, JsonElement Ready)> StartNodeAsync(params string[] args)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
        var process = Process.Start(new ProcessStartInfo("dotnet", [cli, "node", .. args]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        try
        {
            var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.True(line is not null, "no ready line: " + await process.StandardError.ReadToEndAsync());
            return (process, JsonDocument.Parse(line!).RootElement);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            process.Dispose();
            throw;
        }
    }

    [Fact]
    public async Task PrivateNodeAnnouncesItsCircuitAddressOnTheRelayAndIsPingedThroughIt()
    {
        var (relay, relayReady) = await StartNodeAsync("--relay");
        Process? home = null;
        try
        {
            Assert.True(relayReady.GetProperty("relay").GetBoolean());
            var relayAddress = $"{relayReady.GetProperty("listen")[0].GetString()}/p2p/{relayReady.GetProperty("peerId").GetString()}";
            (home, var homeReady) = await StartNodeAsync("--private", "--relay-via", relayAddress, "--bootstrap", relayAddress);
            var circuit = homeReady.GetProperty("circuit")[0].GetString()!;
            Assert.Equal($"{relayAddress}/p2p-circuit/p2p/{homeReady.GetProperty("peerId").GetString()}", circuit);
            Assert.Equal(circuit, homeReady.GetProperty("listen")[0].GetString());

            var ping = await LocalSwarmHandle.RunCliAsync(["ping", circuit, "--count", "1"]);

            Assert.True(ping.Code == 0, ping.Error);
            Assert.Contains("(relayed)", ping.Out);
        }
        finally
        {
            foreach (var p in new[] { home, relay })
            {
                if (p is null) continue;
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.Dispose();
            }
        }
    }
}
