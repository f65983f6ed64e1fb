using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;

// Joins the local swarm that `inferencemesh swarm up` recorded and streams a story from it.
// Usage: StoryTeller [swarm-state-folder] [prompt]
var swarm = args.Length > 0 ? args[0] : ".inferencemesh/swarm";
var prompt = args.Length > 1 ? args[1] : "Once upon a time";
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};
try
{
    await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = swarm }, stop.Token);
    // Greedy over 256 positions: the settings stories260K's reference text was made with.
    await foreach (var text in client.GenerateAsync(prompt, new GenerationOptions(Temperature: 0f, MaxPositions: 256), stop.Token))
        Console.Write(text);
    Console.WriteLine();
    return 0;
}
catch (MeshException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
