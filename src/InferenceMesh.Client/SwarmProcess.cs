using System.Diagnostics;
using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>One process of a local swarm, as <c>swarm.json</c> records it.</summary>
/// <param name="Blocks">The blocks it serves, <c>start:end</c>; null for the bootstrap node.</param>
/// <param name="Arguments">The <c>node</c> arguments it was started with (a restart uses them again).</param>
/// <param name="MetricsUrl">Where the node serves Prometheus metrics; null when it serves none.</param>
public sealed record SwarmProcess(string Name, string PeerId, IReadOnlyList<string> Listen, int Pid, string? Blocks, string LogFile, string IdentityFile, IReadOnlyList<string> Arguments,
    string? MetricsUrl = null)
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
