using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;

namespace InferenceMesh.P2P.Tests;

/// <summary>A js-libp2p process (tests/interop/peer.mjs) that speaks JSON lines on stdout.</summary>
public sealed class JsPeer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<JsonElement> _events = Channel.CreateUnbounded<JsonElement>();
    private readonly List<JsonElement> _seen = [];
    private readonly System.Text.StringBuilder _stderr = new();

    private JsPeer(Process p)
    {
        _process = p;
        p.OutputDataReceived += (_, e) =>
        {
            if (string.IsNullOrWhiteSpace(e.Data)) return;
            try { _events.Writer.TryWrite(JsonDocument.Parse(e.Data).RootElement.Clone()); }
            catch (JsonException) { lock (_stderr) _stderr.AppendLine("stdout: " + e.Data); }
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
    }

    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

    /// <summary>The folder of tests/interop, found upwards from the test binaries.</summary>
    public static string InteropDir()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "interop");
            if (File.Exists(Path.Combine(candidate, "peer.mjs")))
                return candidate;
        }
        throw new InvalidOperationException("tests/interop/peer.mjs not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Starts <paramref name="script"/> (in tests/interop) with <paramref name="config"/> as its JSON argument.</summary>
    public static JsPeer Start(object config, string script = "peer.mjs")
    {
        var dir = InteropDir();
        if (!Directory.Exists(Path.Combine(dir, "node_modules", "libp2p")))
            Assert.Fail($"js-libp2p is not installed in {dir}/node_modules: run `npm ci --prefix tests/interop` (needs Node >= 20) before these interop tests.");
        var psi = new ProcessStartInfo("node")
        {
            WorkingDirectory = dir,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (Environment.GetEnvironmentVariable("P2P_JS_DEBUG") is { Length: > 0 } debug)
            psi.Environment["DEBUG"] = debug; // e.g. libp2p:identify*
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(JsonSerializer.Serialize(config));
        Process p;
        try
        {
            p = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Fail($"cannot start `node` ({e.Message}): install Node >= 20 and run `npm ci --prefix tests/interop`.");
            throw;
        }
        return new JsPeer(p);
    }

    /// <summary>Waits for the next event named <paramref name="name"/> (earlier ones of other names are kept).</summary>
    public async Task<JsonElement> WaitAsync(string name, int seconds = 30, Func<JsonElement, bool>? match = null)
    {
        lock (_seen)
        {
            var i = _seen.FindIndex(e => Name(e) == name && (match?.Invoke(e) ?? true));
            if (i >= 0) { var e = _seen[i]; _seen.RemoveAt(i); return e; }
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        try
        {
            while (true)
            {
                var e = await _events.Reader.ReadAsync(cts.Token);
                if (Name(e) == "error")
                    Assert.Fail($"js peer failed: {e.GetProperty("message").GetString()}\n{Stderr}");
                if (Name(e) == name && (match?.Invoke(e) ?? true))
                    return e;
                lock (_seen) _seen.Add(e);
            }
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"js peer sent no '{name}' event within {seconds}s (exited: {_process.HasExited}).\nstderr:\n{Stderr}");
            throw;
        }
    }

    public async Task SendLineAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    public async Task<int> WaitExitAsync(int seconds = 30)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    private static string? Name(JsonElement e) => e.TryGetProperty("event", out var n) ? n.GetString() : null;

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.StandardInput.Close();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try { await _process.WaitForExitAsync(cts.Token); }
                catch (OperationCanceledException) { _process.Kill(true); }
            }
        }
        finally
        {
            _process.Dispose();
        }
    }
}
