using System.CommandLine;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh demo</c>: the README's main command. Imports stories260K if needed, starts a 3-node
/// local swarm, streams one prompt through it, and stops the swarm.
/// </summary>
public static class DemoCommand
{
    public static Command Create(ICliConsole console)
    {
        var models = new Option<string>("--models") { Description = "Folder holding stories260K/ (the shared models)", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("INFERENCEMESH_MODELS") ?? "../shared/models" };
        var work = new Option<string>("--out") { Description = "Where the imported model and the swarm's state go", DefaultValueFactory = _ => "out" };
        var prompt = new Option<string>("--prompt") { Description = "Text to continue", DefaultValueFactory = _ => "Once upon a time" };
        var nodes = new Option<int>("--nodes") { Description = "Serving nodes", DefaultValueFactory = _ => 3 };
        var command = new Command("demo", "Start a 3-node local swarm with stories260K, stream one prompt through it, stop the swarm") { models, work, prompt, nodes };
        command.SetAction(async (parse, cancellation) =>
        {
            var root = parse.GetValue(models)!;
            var checkpoint = Path.Combine(root, "stories260K", "stories260K.bin");
            var tokenizer = Path.Combine(root, "stories260K", "tok512.bin");
            if (!File.Exists(checkpoint) || !File.Exists(tokenizer))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"stories260K is not in {Path.GetFullPath(root)}; pass --models or set INFERENCEMESH_MODELS to the folder holding stories260K/");
            var output = parse.GetValue(work)!;
            var imported = Path.Combine(output, "stories260K");
            if (!File.Exists(Path.Combine(imported, ModelStore.ModelFile)))
            {
                console.Error.WriteLine($"importing {checkpoint} into {imported}");
                ModelStore.ImportLlama2c(checkpoint, tokenizer, imported);
            }
            var state = Path.Combine(output, "demo-swarm");
            if (SwarmState.TryLoad(state) is not null) await LocalSwarm.StopAsync(state);
            var swarm = await LocalSwarm.StartAsync(new SwarmSettings(parse.GetValue(nodes), "0", "auto", 64, 1024), imported, state, console, cancellation);
            try
            {
                foreach (var node in swarm.Nodes)
                    console.Error.WriteLine($"{node.Name} {node.PeerId} serves {node.Blocks} at {node.DialAddress}");
                await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = state }, cancellation);
                // 256 positions, greedy: the settings the model's reference text was made with.
                var result = await client.CompleteAsync(parse.GetValue(prompt)!, new GenerationOptions(Temperature: 0f, MaxPositions: 256), piece =>
                {
                    console.Out.Write(piece);
                    console.Out.Flush();
                }, cancellation);
                console.Out.WriteLine();
                console.Error.WriteLine($"{result.GeneratedTokens} tokens in {result.Elapsed.TotalSeconds:F2} s ({result.TokensPerSecond:F1} tokens/s) over {string.Join(" → ", result.Route.Select(h => h.Blocks))}, {result.Recoveries} recoveries");
                return (int)ExitCode.Ok;
            }
            finally
            {
                await LocalSwarm.StopAsync(state);
                console.Error.WriteLine("swarm stopped");
            }
        });
        return command;
    }
}
