using System.Diagnostics;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Gateway;
using InferenceMesh.Tests.Shared;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;

namespace InferenceMesh.Integration.Tests;

/// <summary>The gateway's swarm health page in Debian's headless Chromium (driven by Selenium and chromedriver), over a real 3-node swarm.</summary>
public sealed class HealthPageTests
{
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";

    // Short, so that a killed node lapses within the test; the nodes re-announce every half of it.
    private static readonly TimeSpan Ttl = TimeSpan.FromSeconds(6);

    /// <summary>Where the test leaves its screenshot (docs/health-page.png is one of them).</summary>
    public static string ScreenshotPath => Path.Combine(AppContext.BaseDirectory, "health-page.png");

    [Fact]
    public async Task PageShowsEveryPeerAndBlockAndDropsAKilledNodeWithinTheRecordTtl()
    {
        Assert.True(File.Exists(Chromium) && File.Exists(ChromeDriver),
            $"this test needs Debian's headless Chromium at {Chromium} and {ChromeDriver}: apt-get install -y chromium chromium-driver (.ci/run installs them)");
        var whole = Stopwatch.StartNew();
        await using var swarm = await LocalSwarmHandle.StartAsync(3, announceTtl: $"{Ttl.TotalSeconds}s");
        await using var client = await swarm.ClientAsync(RouteMode.Chained);
        await using var gateway = await MeshGateway.StartAsync(client, new GatewayOptions { Urls = ["http://127.0.0.1:0"], ModelName = "stories260K" });
        var nodes = swarm.Swarm.Nodes;
        var expected = nodes.ToDictionary(n => n.PeerId, n => BlocksOf(n.Blocks!));
        var serversPerBlock = Enumerable.Range(0, swarm.Swarm.BlockCount).Select(b => expected.Values.Count(blocks => blocks.Split(',').Contains(b.ToString()))).ToList();

        // The library's view, which /api/swarm serialises: every node, pinged and connected directly, every block as the swarm striped it.
        var snapshot = await client.GetSwarmAsync();
        Assert.Equal(nodes.Select(n => n.PeerId).Order(), snapshot.Peers.Select(p => p.Peer.ToString()).Order());
        Assert.All(snapshot.Peers, p =>
        {
            Assert.Equal(P2P.Dht.ServerState.Online, p.State);
            Assert.NotNull(p.RoundTripMs);
            Assert.Equal(PeerConnection.Direct, p.Connection);
            Assert.True(p.Throughput > 0 && p.FreeCacheTokens > 0, $"{p.Peer}: {p.Throughput} tokens/s, {p.FreeCacheTokens} tokens free");
        });
        Assert.Equal(serversPerBlock, snapshot.OnlineServersPerBlock);

        using var browser = StartChromium();
        browser.Navigate().GoToUrl(gateway.Urls[0] + "/");
        await Poll.UntilAsync(() => Rows(browser).Count == nodes.Count, "the page to list every peer", 20, 200);
        Assert.Equal(expected, Rows(browser));
        Assert.Equal(Enumerable.Range(0, swarm.Swarm.BlockCount).Select(b => b.ToString()), Texts(browser, "#header th[data-block]"));
        Assert.Equal(serversPerBlock.Select(c => c.ToString()), Texts(browser, "#coverage td[data-block]"));
        Assert.Contains("every block served", Texts(browser, "#summary").Single());
        // After peer, state and one column per block: tokens/s, RTT, connection.
        var rttColumn = 2 + swarm.Swarm.BlockCount + 2;
        Assert.All(Texts(browser, $"#peers td:nth-child({rttColumn})"), rtt => Assert.True(double.TryParse(rtt, System.Globalization.CultureInfo.InvariantCulture, out _), rtt));
        Assert.All(Texts(browser, $"#peers td:nth-child({rttColumn + 1})"), connection => Assert.Equal("direct", connection));
        browser.GetScreenshot().SaveAsFile(ScreenshotPath);

        var victim = nodes[0];
        Assert.True(NodeLauncher.Stop(victim.Pid, force: true));
        var sinceKill = Stopwatch.StartNew();
        // The last announcement lapses within the TTL; the page polls every 2 s and the gateway reuses a survey for 1 s.
        var bound = Ttl + TimeSpan.FromSeconds(2 + 1 + 3);
        await Poll.UntilAsync(() => !Rows(browser).ContainsKey(victim.PeerId), $"the page to drop the killed {victim.Name}", bound.TotalSeconds, 200);
        Assert.True(sinceKill.Elapsed <= bound, $"gone after {sinceKill.Elapsed.TotalSeconds:F1} s");
        Assert.Equal(expected.Where(e => e.Key != victim.PeerId).ToDictionary(), Rows(browser));
        Assert.DoesNotContain(victim.PeerId, (await client.GetSwarmAsync()).Peers.Select(p => p.Peer.ToString()));
        Assert.True(whole.Elapsed < TimeSpan.FromSeconds(60), $"the test took {whole.Elapsed.TotalSeconds:F0} s");
    }

    private static ChromeDriver StartChromium()
    {
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = Chromium };
        // Root in a container: no sandbox, no /dev/shm to speak of.
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=960,400");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(30));
    }

    private static string BlocksOf(string span)
    {
        var (start, end) = (int.Parse(span.Split(':')[0]), int.Parse(span.Split(':')[1]));
        return string.Join(",", Enumerable.Range(start, end - start));
    }

    /// <summary>Each row's peer and the blocks it marks served, read in one script so a re-render cannot go stale under it.</summary>
    private static Dictionary<string, string> Rows(ChromeDriver browser) =>
        ((IEnumerable<object>)browser.ExecuteScript(
            "return Array.from(document.querySelectorAll('#peers tr[data-peer]')).map(r => r.dataset.peer + '|' + Array.from(r.querySelectorAll('td[data-served]')).map(c => c.dataset.block).join(','))")!)
        .Select(row => ((string)row).Split('|')).ToDictionary(parts => parts[0], parts => parts[1]);

    private static List<string> Texts(ChromeDriver browser, string selector) =>
        [.. ((IEnumerable<object>)browser.ExecuteScript($"return Array.from(document.querySelectorAll('{selector}')).map(e => e.textContent)")!).Cast<string>()];
}
