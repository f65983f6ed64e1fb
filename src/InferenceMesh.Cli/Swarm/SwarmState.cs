using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Swarm;

/// <summary>One process of a local swarm.</summary>
/// <param name="Blocks">The blocks it serves, <c>start:end</c>; null for the bootstrap node.</param>
/// <param name="Arguments">The <c>node</c> arguments it was started with (a restart uses them again).</param>
public sealed record SwarmProcess(string Name, string PeerId, IReadOnlyList<string> Listen, int Pid, string? Blocks, string LogFile, string IdentityFile, IReadOnlyList<string> Arguments)
{
    /// <summary>The first listen address with <c>/p2p/&lt;peer&gt;</c>, as other peers dial it.</summary>
    public string DialAddress => Listen.Count > 0 ? $"{Listen[0]}/p2p/{PeerId}" : "";

    public bool IsRunning
    {
        get
        {
            try
            {
                using var process = Process.GetProcessById(Pid);
                return !process.HasExited;
            }
            catch (ArgumentException)
            {
                return false;
            }
        }
    }
}

/// <summary>What <c>swarm up</c> started, kept in a state file so later commands find it.</summary>
public sealed record SwarmState(string Model, string ModelId, int BlockCount, string LinkDelay, SwarmProcess Bootstrap, IReadOnlyList<SwarmProcess> Nodes, DateTimeOffset Started)
{
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
