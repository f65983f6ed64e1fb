using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.Gateway;
using InferenceMesh.P2P;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh serve</c>: joins the mesh (<c>--bootstrap</c>, or the local swarm) and runs the OpenAI-compatible
/// gateway until SIGINT/SIGTERM. It prints one JSON line <c>{"event":"ready","urls":[…]}</c> on stdout once it listens.
/// </summary>
public static class ServeCommand
{
    public static Command Create(ICliConsole console)
    {
        var urls = new Option<string[]>("--urls") { Description = "URLs to listen on (port 0 picks a free one)", DefaultValueFactory = _ => ["http://127.0.0.1:8080"], AllowMultipleArgumentsPerToken = true };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "Peers to join through; without it, the local swarm recorded by 'swarm up'", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var model = new Option<string?>("--model") { Description = "Split model directory for the head, tail and tokenizer; without it, the local swarm's" };
        var modelName = new Option<string>("--model-name") { Description = "The model name clients send (the model's id, the sha256 of its manifest, is accepted too)", DefaultValueFactory = _ => "inferencemesh" };
        var sessions = new Option<int>("--max-sessions") { Description = "Generations at once", DefaultValueFactory = _ => 16 };
        var queued = new Option<int>("--max-queued") { Description = "Requests waiting for a session; more are answered 429", DefaultValueFactory = _ => 32 };
        var command = new Command("serve", "Serve an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions) over the mesh")
        {
            urls, bootstrap, model, modelName, sessions, queued, SwarmCommand.StateDirectory,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            var verbose = parse.GetValue(CliApp.Verbose);
            await using var client = await MeshClient.ConnectAsync(new MeshClientOptions
            {
                Bootstrap = parse.GetValue(bootstrap)!.Select(Multiaddr.Parse).ToList(),
                ModelDirectory = parse.GetValue(model),
                LocalSwarm = parse.GetValue(SwarmCommand.StateDirectory),
                Log = line => { if (verbose) console.Error.WriteLine(line); },
            }, cancellation);
            var name = parse.GetValue(modelName)!;
            await using var gateway = await MeshGateway.StartAsync(client, new GatewayOptions
            {
                Urls = parse.GetValue(urls)!,
                ModelName = name,
                MaxConcurrentSessions = parse.GetValue(sessions),
                MaxQueuedRequests = parse.GetValue(queued),
            }, cancellation);
            console.Out.WriteLine(JsonSerializer.Serialize(new { @event = "ready", urls = gateway.Urls, model = name }, CliJson.Options));
            console.Out.Flush();
            await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
