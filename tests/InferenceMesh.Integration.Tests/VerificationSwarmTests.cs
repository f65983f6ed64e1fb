using System.Text.Json;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Node;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>Verification through node processes: a node started with <c>--fault</c> among honest ones.</summary>
public sealed class VerificationSwarmTests
{
    [Fact]
    public async Task FaultyNodeInARealSwarmIsBannedReportedInTheDhtAndBannedByLaterClientsFromTheReport()
    {
        // Three honest nodes serving every block, and a fourth that adds noise to whatever it returns.
        await using var swarm = await LocalSwarmHandle.StartAsync(3, replicas: 3);
        var identity = Path.Combine(swarm.State, "faulty.key");
        var faulty = await NodeLauncher.StartAsync("faulty",
            ["--identity", identity, "--bootstrap", swarm.Swarm.Bootstrap.DialAddress, "--model", swarm.Swarm.Model, "--blocks", $"0:{swarm.Swarm.BlockCount}", "--fault", "noise=0.05"],
            Path.Combine(swarm.State, "faulty.log"), identity, null, TimeSpan.FromSeconds(120), CancellationToken.None, new Dictionary<string, string> { [StageFault.AllowVariable] = "1" });
        try
        {
            await using (var client = await swarm.ClientAsync(RouteMode.Chained))
            {
                await Poll.UntilAsync(async () => (await client.GetSwarmAsync()).Peers.Any(p => p.Peer.ToString() == faulty.PeerId),
                    "the DHT to list the faulty node", seconds: 60, intervalMs: 500);
            }
            int caught = 0, convicted = 0;
            var lastVerification = "";
            for (var run = 0; run < 4; run++)
            {
                var result = await swarm.RunAsync("prompt", "", "--steps", "256", "--verify", "strict", "--json");
                Assert.True(result.Code == 0, result.Error);
                var json = JsonDocument.Parse(result.Out).RootElement;
                Assert.Equal(TestModels.Stories260KReferenceText, json.GetProperty("text").GetString());
                var banned = json.GetProperty("verification").GetProperty("banned").EnumerateArray().Select(e => e.GetString()).ToList();
                Assert.All(banned, peer => Assert.Equal(faulty.PeerId, peer));
                if (banned.Contains(faulty.PeerId)) caught++;
                // A conviction on the route (not one as a lying validator) leaves evidence, and the evidence is published.
                var verification = json.GetProperty("verification");
                lastVerification = verification.ToString();
                if (verification.GetProperty("evidence").EnumerateArray().Any(e => e.GetProperty("server").GetString() == faulty.PeerId))
                {
                    convicted++;
                    Assert.True(verification.GetProperty("reportsPublished").EnumerateArray().Any(e => e.GetString() == faulty.PeerId), result.Error);
                }
            }
            Assert.True(caught >= 1 && convicted >= 1, $"the faulty node was caught in {caught} and convicted on a route in {convicted} of 4 strict generations; last: {lastVerification}");

            // A later client that checks nothing itself reads the report from the DHT, re-runs its evidence on two other
            // servers, and leaves the faulty node out before its first step.
            var later = await swarm.RunAsync("prompt", "", "--steps", "256", "--verify", "off", "--json");
            Assert.True(later.Code == 0, later.Error);
            var laterJson = JsonDocument.Parse(later.Out).RootElement;
            Assert.Equal(TestModels.Stories260KReferenceText, laterJson.GetProperty("text").GetString());
            var judgements = laterJson.GetProperty("verification").GetProperty("judgements").EnumerateArray().ToList();
            Assert.Contains(judgements, j => j.GetProperty("accused").GetString() == faulty.PeerId && j.GetProperty("verdict").GetString() == "confirmed");
            Assert.DoesNotContain(laterJson.GetProperty("route").EnumerateArray(), hop => hop.GetProperty("peerId").GetString() == faulty.PeerId);
        }
        finally
        {
            NodeLauncher.Stop(faulty.Pid, force: true);
        }
    }
}
