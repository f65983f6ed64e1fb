using System.Diagnostics;
using System.Text.Json;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// A process running in a <see cref="NatTopology"/> namespace whose stdout JSON lines (the <c>node</c> command's <c>ready</c> and
/// <c>address</c> events) and stderr are collected as they come. Owned by the topology, which kills it on dispose.
/// </summary>
internal sealed class NamespaceProcess
{
    private readonly List<JsonElement> _events = [];
    private readonly List<string> _errors = [];

    public NamespaceProcess(Process process)
    {
        Process = process;
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is not { } line) return;
            if (!line.StartsWith('{'))
            {
                lock (_errors) _errors.Add("stdout: " + line);
                return;
            }
            try
            {
                var element = JsonDocument.Parse(line).RootElement.Clone();
                lock (_events) _events.Add(element);
            }
            catch (JsonException)
            {
                lock (_errors) _errors.Add("unparseable stdout line: " + line);
            }
        };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_errors) _errors.Add(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Process Process { get; }

    public IReadOnlyList<JsonElement> Events { get { lock (_events) return [.. _events]; } }

    /// <summary>Its stderr so far, for failure messages.</summary>
    public string Errors { get { lock (_errors) return string.Join('\n', _errors); } }

    /// <summary>Waits for the first JSON line with <c>"event"</c> = <paramref name="name"/> that <paramref name="match"/> accepts.</summary>
    public async Task<JsonElement> WaitForEventAsync(string name, Func<JsonElement, bool>? match = null, double seconds = 30)
    {
        JsonElement found = default;
        bool Seen()
        {
            foreach (var e in Events)
                if (e.TryGetProperty("event", out var ev) && ev.GetString() == name && (match?.Invoke(e) ?? true))
                {
                    found = e;
                    return true;
                }
            if (Process.HasExited) Assert.Fail($"the process exited ({Process.ExitCode}) before a '{name}' line: {Errors}");
            return false;
        }
        await Poll.UntilAsync(() => Task.FromResult(Seen()), $"a '{name}' line", seconds, 20, () => Errors);
        return found;
    }

    /// <summary>Sends SIGTERM and waits for a clean exit; returns the exit code.</summary>
    public async Task<int> StopAsync(double seconds = 20)
    {
        using (var kill = Process.Start("kill", ["-TERM", Process.Id.ToString()])) await kill.WaitForExitAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await Process.WaitForExitAsync(timeout.Token);
        return Process.ExitCode;
    }
}
