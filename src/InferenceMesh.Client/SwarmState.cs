using System.Text.Json;
using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>
/// What <c>swarm up</c> started, kept in <c>swarm.json</c> in the swarm's state folder so later commands, and
/// <see cref="MeshClient.ConnectAsync"/> with <see cref="MeshClientOptions.LocalSwarm"/>, find it.
/// </summary>
/// <param name="Replicas">Servers each block was given at start.</param>
public sealed record SwarmState(string Model, string ModelId, int BlockCount, string LinkDelay, SwarmProcess Bootstrap, IReadOnlyList<SwarmProcess> Nodes, DateTimeOffset Started, int Replicas = 1)
{
    /// <summary>The emulated link delay as a duration.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public TimeSpan LinkDelayTime => Durations.Parse(LinkDelay);

    public const string DefaultDirectory = ".inferencemesh/swarm";
    public const string FileName = "swarm.json";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static string PathIn(string directory) => System.IO.Path.Combine(directory, FileName);

    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var temporary = PathIn(directory) + ".tmp";
        File.WriteAllBytes(temporary, JsonSerializer.SerializeToUtf8Bytes(this, Json));
        File.Move(temporary, PathIn(directory), overwrite: true);
    }

    public static SwarmState? TryLoad(string directory)
    {
        var path = PathIn(directory);
        if (!File.Exists(path)) return null;
        try
        {
            return JsonSerializer.Deserialize<SwarmState>(File.ReadAllBytes(path), Json);
        }
        catch (JsonException e)
        {
            throw new MeshException(MeshErrorCode.InvalidArgument, $"{path} is not a swarm state file: {e.Message}");
        }
    }

    public static SwarmState Load(string directory) =>
        TryLoad(directory) ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"no swarm is recorded in {PathIn(directory)}; start one with 'inferencemesh swarm up'");
}
