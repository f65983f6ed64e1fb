using System.CommandLine;
using System.Globalization;
using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh ping &lt;multiaddr&gt;</c>: libp2p ping round trips, printed like <c>ipfs ping</c>, each with the path of the
/// connection it went over (direct or relayed). A <c>/p2p-circuit</c> address is dialled through the relay; with <c>--listen</c>
/// the pinging host can be hole punched (DCUtR), and later pings show the direct connection that replaced the relayed one.
/// </summary>
public static class PingCommand
{
    public static Command Create(ICliConsole console)
    {
        var address = new Argument<string>("multiaddr") { Description = "The peer, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…" };
        var count = new Option<int>("--count", "-n") { Description = "Pings to send", DefaultValueFactory = _ => 10 };
        var listen = new Option<string[]>("--listen") { Description = "Listen on these multiaddrs too, so the peer can hole punch to this host (DCUtR)", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var interval = new Option<string>("--interval") { Description = "Wait between pings, e.g. 500ms", DefaultValueFactory = _ => "0" };
        var command = new Command("ping", "Measure libp2p ping round trips to a peer") { address, count, listen, interval };
        command.SetAction(async (parse, cancellation) =>
        {
            var target = Multiaddr.Parse(parse.GetValue(address)!);
            using var key = Ed25519KeyPair.Generate();
            // Hole-punch progress goes to stderr (the pings' own lines are stdout), so a punch that fails says why.
            await using var host = new Libp2pHost(new Libp2pHostOptions
            {
                Identity = key,
                Log = line => { if (line.StartsWith("dcutr:", StringComparison.Ordinal)) lock (console.Error) console.Error.WriteLine(line); },
            });
            var wait = Durations.Parse(parse.GetValue(interval)!);
            await host.StartAsync(parse.GetValue(listen)!.Select(Multiaddr.Parse).ToList(), cancellation);
            console.Out.WriteLine($"PING {target.PeerId?.ToString() ?? target.ToString()}.");
            var times = new List<TimeSpan>();
            for (var i = 0; i < parse.GetValue(count); i++)
            {
                if (i > 0 && wait > TimeSpan.Zero)
                    await Task.Delay(wait, cancellation);
                var connection = await host.DialAsync(target, cancellation);
                var rtt = (await connection.PingAsync(1, cancellation))[0];
                times.Add(rtt);
                console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Pong received: time={rtt.TotalMilliseconds:F2} ms ({connection.Path})"));
                console.Out.Flush();
            }
            console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"Average latency: {times.Average(t => t.TotalMilliseconds):F2}ms"));
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
