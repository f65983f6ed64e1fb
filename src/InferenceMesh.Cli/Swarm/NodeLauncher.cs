using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Swarm;

/// <summary>
/// Starts <c>inferencemesh node</c> processes that outlive the command starting them: each runs under
/// <c>setsid</c> with stdout and stderr in a log file, and its ready line is read back from that file.
/// </summary>
public static class NodeLauncher
{
    /// <summary>The command that runs this same CLI: the apphost, or <c>dotnet inferencemesh.dll</c>.</summary>
    public static IReadOnlyList<string> SelfCommand()
    {
        var host = Environment.ProcessPath ?? "dotnet";
        return Path.GetFileNameWithoutExtension(host) == "dotnet"
            ? [host, typeof(NodeLauncher).Assembly.Location]
            : [host];
    }

    /// <summary>Starts a node and waits for its <c>{"event":"ready"}</c> line. Safe to cancel (the process is then killed).</summary>
    /// <param name="environment">Variables set for the node on top of this process's environment.</param>
    public static async Task<SwarmProcess> StartAsync(string name, IReadOnlyList<string> nodeArguments, string logFile, string identityFile, string? blocks, TimeSpan timeout, CancellationToken cancellation,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        File.AppendAllText(logFile, "");
        var skip = File.ReadLines(logFile).Count();
        var command = string.Join(' ', SelfCommand().Concat(["node", .. nodeArguments]).Select(Quote));
        var start = new ProcessStartInfo("setsid", ["sh", "-c", $"exec {command} >>{Quote(logFile)} 2>&1 </dev/null"])
        {
            UseShellExecute = false,
        };
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"could not start {name}");
        var deadline = DateTime.UtcNow + timeout;
        try
        {
            while (DateTime.UtcNow < deadline)
            {
                cancellation.ThrowIfCancellationRequested();
                foreach (var line in File.ReadLines(logFile).Skip(skip))
                {
                    if (!line.StartsWith("{\"event\":\"ready\"", StringComparison.Ordinal)) continue;
                    using var ready = JsonDocument.Parse(line);
                    var peerId = ready.RootElement.GetProperty("peerId").GetString()!;
                    var listen = ready.RootElement.GetProperty("listen").EnumerateArray().Select(e => e.GetString()!).ToList();
                    var metrics = nodeArguments.SkipWhile(a => a != "--metrics-url").Skip(1).FirstOrDefault();
                    return new SwarmProcess(name, peerId, listen, process.Id, blocks, logFile, identityFile, nodeArguments, metrics);
                }
                if (process.HasExited)
                    throw new MeshException(MeshErrorCode.InvalidArgument, $"{name} exited with code {process.ExitCode} before it was ready: {LastLines(logFile)}");
                await Task.Delay(100, cancellation).ConfigureAwait(false);
            }
            throw new MeshException(MeshErrorCode.Timeout, $"{name} was not ready within {timeout.TotalSeconds:F0} s: {LastLines(logFile)}");
        }
        catch
        {
            Stop(process.Id, force: true);
            throw;
        }
    }

    /// <summary>Sends SIGTERM (or SIGKILL with <paramref name="force"/>); false when the process is already gone.</summary>
    public static bool Stop(int pid, bool force)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            if (process.HasExited) return false;
            if (force) process.Kill(entireProcessTree: true);
            else Process.Start("kill", ["-TERM", pid.ToString()])?.WaitForExit(5000);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    public static async Task WaitForExitAsync(int pid, TimeSpan timeout)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            using var cancel = new CancellationTokenSource(timeout);
            await process.WaitForExitAsync(cancel.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ArgumentException or OperationCanceledException or InvalidOperationException)
        {
        }
    }

    private static string LastLines(string logFile) =>
        string.Join(" | ", File.ReadLines(logFile).Where(l => l.Length > 0).TakeLast(3));

    private static string Quote(string value) => "'" + value.Replace("'", "'\\''") + "'";
}
