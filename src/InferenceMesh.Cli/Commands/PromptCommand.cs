using System.CommandLine;
using System.Diagnostics;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh prompt</c>: a client that joins the mesh through <c>--bootstrap</c> (or the local swarm),
/// plans a route from the DHT's span announcements, runs Head and Tail here and streams the text.
/// </summary>
public static class PromptCommand
{
    public static Command Create(ICliConsole console)
    {
        var text = new Argument<string>("text") { Description = "Text to continue", DefaultValueFactory = _ => "", Arity = ArgumentArity.ZeroOrOne };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "Peers to join through; without it, the local swarm recorded by 'swarm up'", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var model = new Option<string?>("--model") { Description = "Split model directory for the head, tail and tokenizer; without it, the local swarm's" };
        var route = new Option<string>("--route") { Description = "chained (each server pushes to the next) or relayed (every hop returns here)", DefaultValueFactory = _ => "chained" };
        var linkDelay = new Option<string>("--link-delay") { Description = "Emulated one-way delay on the client's stage streams; defaults to the local swarm's", DefaultValueFactory = _ => "" };
        var stats = new Option<bool>("--stats") { Description = "Print route, recoveries and per-token latency on stderr at the end" };
        var command = new Command("prompt", "Generate text through the mesh") { text, bootstrap, model, route, linkDelay, stats, GenerateCommand.MaxTokens, GenerateCommand.Temperature, GenerateCommand.TopP, GenerateCommand.Seed, SwarmCommand.StateDirectory };
        command.SetAction(async (parse, cancellation) =>
        {
            var peers = parse.GetValue(bootstrap)!;
            var modelDirectory = parse.GetValue(model);
            var delay = parse.GetValue(linkDelay)!;
            if (peers.Length == 0 || modelDirectory is null)
            {
                var swarm = SwarmState.TryLoad(parse.GetValue(SwarmCommand.StateDirectory)!)
                    ?? throw new MeshException(MeshErrorCode.InvalidArgument, "give --bootstrap and --model, or start a local swarm with 'inferencemesh swarm up'");
                if (peers.Length == 0) peers = [swarm.Bootstrap.DialAddress];
                modelDirectory ??= swarm.Model;
                if (delay.Length == 0) delay = swarm.LinkDelay;
            }
            var mode = parse.GetValue(route) switch
            {
                "chained" => RouteMode.Chained,
                "relayed" => RouteMode.Relayed,
                var other => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown route '{other}'; expected chained or relayed"),
            };
            var verbose = parse.GetValue(CliApp.Verbose);
            await using var connection = await MeshClientConnection.ConnectAsync(peers, modelDirectory, new MeshClientOptions(mode),
                delay.Length == 0 ? TimeSpan.Zero : Durations.Parse(delay), line => { if (verbose) console.Error.WriteLine(line); }, cancellation);
            var client = connection.Client;
            var options = new GenerationOptions(parse.GetValue(GenerateCommand.MaxTokens), parse.GetValue(GenerateCommand.Temperature), parse.GetValue(GenerateCommand.TopP), parse.GetValue(GenerateCommand.Seed));
            var watch = Stopwatch.StartNew();
            var pieces = 0;
            await foreach (var piece in client.GenerateAsync(parse.GetValue(text)!, options, mode, cancellation))
            {
                console.Out.Write(piece);
                console.Out.Flush();
                pieces++;
            }
            console.Out.WriteLine();
            if (parse.GetValue(stats))
                console.Error.WriteLine($"{pieces} pieces in {watch.Elapsed.TotalSeconds:F2} s ({watch.Elapsed.TotalMilliseconds / Math.Max(pieces, 1):F2} ms each), {mode} route, {client.Recoveries} recoveries");
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
