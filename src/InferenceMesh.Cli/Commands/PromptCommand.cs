using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.P2P;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh prompt</c>: joins the mesh through <c>--bootstrap</c> (or the local swarm) with
/// <see cref="MeshClient.ConnectAsync"/> and streams the text; <c>--json</c> prints the result with its route instead.
/// With <c>--chat</c>, the text is the user's message and only the reply is printed (see <see cref="ChatOptions"/>).
/// </summary>
public static class PromptCommand
{
    public static Command Create(ICliConsole console)
    {
        var text = new Argument<string>("text") { Description = "Text to continue", DefaultValueFactory = _ => "", Arity = ArgumentArity.ZeroOrOne };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "Peers to join through; without it, the local swarm recorded by 'swarm up'", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var model = new Option<string?>("--model") { Description = "Split model directory for the head, tail and tokenizer; without it, the local swarm's" };
        var route = new Option<string>("--route") { Description = "chained (each server pushes to the next) or relayed (every hop returns here)", DefaultValueFactory = _ => "chained" };
        var linkDelay = new Option<string?>("--link-delay") { Description = "Emulated one-way delay on the client's stage streams; defaults to the local swarm's" };
        var stepTimeout = new Option<string>("--step-timeout") { Description = "A server silent this long during a step is replaced", DefaultValueFactory = _ => "30s" };
        var listen = new Option<string[]>("--listen") { Description = "Listen on these multiaddrs, e.g. /ip4/0.0.0.0/tcp/4001, so private servers reached through a relay can hole punch to this client (DCUtR) and its hops run direct", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var stats = new Option<bool>("--stats") { Description = "Print route, recoveries and tokens/s on stderr at the end" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (text, route with per-hop latency, recoveries, tokens/s, verification checks with cost and verdicts) instead of streaming" };
        var verify = new Option<string>("--verify") { Description = "Check that servers ran their blocks: off, sample (replay a hop on another server with --check-rate per window) or strict (every window, text shown once checked)", DefaultValueFactory = _ => "sample" };
        var checkRate = new Option<double>("--check-rate") { Description = "In sample mode, the probability of replaying each hop at each window end (0..1)", DefaultValueFactory = _ => new MeshClientOptions().CheckRate };
        var keepOutputs = new Option<bool>("--servers-keep-outputs") { Description = "Chained routes with --verify off: servers keep the outputs they push on and send a receipt, so this client takes in one activation per token; a recovery fetches what it needs" };
        var command = new Command("prompt", "Generate text through the mesh")
        {
            text, bootstrap, model, route, linkDelay, listen, stepTimeout, stats, json, verify, checkRate, keepOutputs,
            ChatOptions.Chat, ChatOptions.System, ChatOptions.Message, ChatOptions.Template,
            GenerateCommand.Ids, GenerateCommand.MaxTokens, GenerateCommand.Steps, GenerateCommand.Temperature, GenerateCommand.TopP, GenerateCommand.Seed, SwarmCommand.StateDirectory,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var verbose = parse.GetValue(CliApp.Verbose);
            var options = new MeshClientOptions
            {
                Bootstrap = parse.GetValue(bootstrap)!.Select(Multiaddr.Parse).ToList(),
                ModelDirectory = parse.GetValue(model),
                ListenAddresses = parse.GetValue(listen)!.Select(Multiaddr.Parse).ToList(),
                LocalSwarm = parse.GetValue(SwarmCommand.StateDirectory),
                Mode = ParseRoute(parse.GetValue(route)!),
                LinkDelay = parse.GetValue(linkDelay) is { } delay ? Durations.Parse(delay) : null,
                StepTimeout = Durations.Parse(parse.GetValue(stepTimeout)!),
                Verify = ParseVerify(parse.GetValue(verify)!),
                CheckRate = ParseRate(parse.GetValue(checkRate)),
                ServersKeepOutputs = parse.GetValue(keepOutputs),
                Log = line => { if (verbose) console.Error.WriteLine(line); },
                ChatTemplate = ChatOptions.TemplateFamily(parse),
            };
            var turns = ChatOptions.Turns(parse, parse.GetValue(text)!);
            await using var client = await MeshClient.ConnectAsync(options, cancellation);
            if (GenerateCommand.PromptIds(parse) is { } ids)
            {
                var generated = new List<int>();
                await foreach (var id in client.GenerateIdsAsync(ids, GenerateCommand.Options(parse), cancellation)) generated.Add(id);
                console.Out.WriteLine(string.Join(',', generated));
                return (int)ExitCode.Ok;
            }
            var asJson = parse.GetValue(json);
            Action<string>? onText = asJson ? null : piece =>
            {
                console.Out.Write(piece);
                console.Out.Flush();
            };
            var result = turns is null
                ? await client.CompleteAsync(parse.GetValue(text)!, GenerateCommand.Options(parse), onText, cancellation)
                : await client.CompleteChatAsync(turns, GenerateCommand.Options(parse), onText, cancellation);
            if (asJson) console.Out.WriteLine(JsonSerializer.Serialize(result, CliJson.Options));
            else console.Out.WriteLine();
            if (parse.GetValue(stats))
                console.Error.WriteLine($"{result.GeneratedTokens} tokens in {result.Elapsed.TotalSeconds:F2} s ({result.TokensPerSecond:F1} tokens/s, first after {result.TimeToFirstToken?.TotalMilliseconds ?? 0:F0} ms), {result.Mode} route "
                    + $"{string.Join(" → ", result.Route.Select(h => $"{h.Blocks}@{h.PeerId[^6..]} {h.MeanLatencyMs:F2} ms{(h.Connection is PeerConnection.Relayed ? " relayed" : "")}"))}, {result.Recoveries} recoveries"
                    + (result.Verification is { } v ? $", verify {v.Mode}: {v.ChecksRun} checks ({string.Join(", ", v.Verdicts.Select(p => $"{p.Value} {p.Key}"))}), {v.ReplayedPositions} positions replayed, {v.Restarts} restarts" : ""));
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static double ParseRate(double rate) =>
        rate is >= 0 and <= 1 ? rate : throw new MeshException(MeshErrorCode.InvalidArgument, $"--check-rate {rate} is outside 0..1");

    private static VerifyMode ParseVerify(string text) => text switch
    {
        "off" => VerifyMode.Off,
        "sample" => VerifyMode.Sample,
        "strict" => VerifyMode.Strict,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown --verify '{text}'; expected off, sample or strict"),
    };

    private static RouteMode ParseRoute(string text) => text switch
    {
        "chained" => RouteMode.Chained,
        "relayed" => RouteMode.Relayed,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown route '{text}'; expected chained or relayed"),
    };
}
