using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Swarm;

/// <summary>
/// The churn soak: starts a local swarm with spares, keeps <see cref="SoakOptions.Sessions"/> greedy generations
/// going through one <see cref="MeshClient"/>, SIGKILLs a random serving node every <see cref="SoakOptions.KillPeriod"/>
/// and restarts it, checks every completed text against the one-process text, and samples every process's RSS,
/// open files and threads from <c>/proc</c> (Linux only).
/// </summary>
public static class SoakRunner
{
    /// <summary>The name of the soak's own process (the client holding every session) in the samples.</summary>
    public const string ClientProcess = "client";

    /// <summary>
    /// Runs the soak and stops the swarm. Progress lines (kills, counts) go to <paramref name="log"/>. Safe to cancel:
    /// the swarm is stopped and the cancellation is thrown.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for options out of range or a non-Linux host.</exception>
    public static async Task<SoakResult> RunAsync(SoakOptions options, TextWriter log, CancellationToken cancellation = default)
    {
        Validate(options);
        var generation = new GenerationOptions(MaxTokens: options.Positions, Temperature: 0f, MaxPositions: options.Positions);
        var references = new Dictionary<string, string>();
        using (var local = LocalModel.Open(options.Model))
            foreach (var prompt in options.Prompts.Distinct())
                references[prompt] = string.Concat(local.Generate(prompt, generation));

        var settings = new SwarmSettings(options.Nodes, "0", "ort", MaxSessions: Math.Max(64, 4 * options.Sessions), KvBudgetMb: 256, Replicas: options.Replicas, Metrics: true);
        var swarm = await LocalSwarm.StartAsync(settings, options.Model, options.State, new WriterCliConsole(TextWriter.Null, log), cancellation).ConfigureAwait(false);
        var startedAt = options.Time.GetUtcNow();
        using var run = new Run(options, options.Time.GetTimestamp());
        run.Track("bootstrap", swarm.Bootstrap.Pid);
        run.Track(ClientProcess, Environment.ProcessId);
        foreach (var node in swarm.Nodes) run.Track(node.Name, node.Pid, node.MetricsUrl);
        try
        {
            await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = options.State }, cancellation).ConfigureAwait(false);
            using var stopSampling = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
            var sampler = SampleAsync(run, stopSampling.Token);
            var killer = KillAsync(run, swarm.Nodes.Select(n => n.Name).ToList(), log, cancellation);
            await Task.WhenAll(Enumerable.Range(0, options.Sessions).Select(s => GenerateLoopAsync(run, client, s, references, generation, cancellation))).ConfigureAwait(false);
            await killer.ConfigureAwait(false);
            await stopSampling.CancelAsync().ConfigureAwait(false);
            await sampler.ConfigureAwait(false);
            await run.SampleAllAsync(cancellation).ConfigureAwait(false);
        }
        finally
        {
            await LocalSwarm.StopAsync(options.State).ConfigureAwait(false);
        }
        var elapsed = run.Now;
        var result = new SoakResult(startedAt, $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}", options.Nodes, options.Replicas, options.Sessions,
            options.Duration.TotalSeconds, options.KillPeriod.TotalSeconds, options.Seed, options.Positions, options.WarmUp.TotalSeconds, elapsed,
            run.Completed, run.Exact, run.Recoveries, [.. run.Mismatches], [.. run.Failures], [.. run.Kills], [.. run.Samples], []);
        return result with { GrowthChecks = CheckGrowth(result.Samples, options) };
    }

    /// <summary>
    /// The flatness rule: for each process name and resource, leave out samples younger than <see cref="SoakOptions.WarmUp"/>,
    /// split the rest by the sampled process's age into thirds of <c>[youngest, oldest]</c> warm age seen, and take the median of
    /// the second and the last third; RSS or threads grew when the last is above <c>second × (1 + GrowthFraction) + slack</c>,
    /// open files when it is above <c>second + FdSlack</c>. By age, not by the run's clock, because a leak grows with the
    /// life of the process that leaks, and a node restarted every few minutes is a new process: thirds of the run's clock
    /// would compare young processes with old ones by chance (the first 1-hour soak flagged a node whose samples in the
    /// run's last third came from one process that had lived 15 minutes, against younger ones before). For a process that
    /// is never restarted, age and the run's clock are the same thing. Medians, because the GC's sawtooth and the thread
    /// pool's injected threads come and go; thirds, so startup is behind and a leak has had a third of the span to add up.
    /// Open files get no fraction: a linear leak adds only a third of its total between the two thirds' medians, which a
    /// fraction of a few hundred sockets would hide. A serving node's open libp2p connections (from its own metrics) are
    /// judged the same way as its open files.
    /// </summary>
    public static IReadOnlyList<SoakResult.Growth> CheckGrowth(IReadOnlyList<SoakResult.Sample> samples, SoakOptions options)
    {
        var checks = new List<SoakResult.Growth>();
        var resources = new (string Name, Func<SoakResult.Sample, double?> Value, double Fraction, double Slack)[]
        {
            ("rssMiB", s => s.RssMiB, options.GrowthFraction, options.RssSlackMiB), ("fds", s => s.Fds, 0, options.FdSlack), ("threads", s => s.Threads, options.GrowthFraction, options.ThreadSlack),
            ("connections", s => s.Counters?.Connections, 0, options.FdSlack),
        };
        foreach (var process in samples.Select(s => s.Process).Distinct().Order(StringComparer.Ordinal))
        {
            var warmUp = options.WarmUp.TotalSeconds;
            var warm = samples.Where(s => s.Process == process && s.AgeSeconds >= warmUp).ToList();
            // From the youngest warm sample, not from the warm-up: a process started long before the soak (the client
            // inside a test run) has no samples at young ages, and thirds from the warm-up would leave its second third empty.
            var youngest = warm.Count == 0 ? warmUp : warm.Min(s => s.AgeSeconds);
            var third = warm.Count == 0 ? 0 : (warm.Max(s => s.AgeSeconds) - youngest) / 3;
            foreach (var (name, value, fraction, slack) in resources)
            {
                // The node's own counters exist only for processes that serve metrics (not the bootstrap or the client).
                if (!samples.Any(s => s.Process == process && value(s) is not null)) continue;
                var second = warm.Where(s => s.AgeSeconds >= youngest + third && s.AgeSeconds < youngest + 2 * third).Select(value).OfType<double>().ToList();
                var last = warm.Where(s => s.AgeSeconds >= youngest + 2 * third).Select(value).OfType<double>().ToList();
                var judged = second.Count >= 3 && last.Count >= 3;
                var before = judged ? Statistics.Median(second) : 0;
                var after = judged ? Statistics.Median(last) : 0;
                var limit = before * (1 + fraction) + slack;
                checks.Add(new SoakResult.Growth(process, name, judged, before, after, judged ? limit : 0, judged && after > limit));
            }
        }
        return checks;
    }

    /// <summary>
    /// The node's own gauges from its Prometheus text: sessions open, KV-cache MiB reserved and budgeted, and open
    /// libp2p connections (direct and relayed summed). Lines it does not know are ignored; a gauge missing reads 0.
    /// </summary>
    public static SoakResult.NodeCounters ParseNodeCounters(string prometheusText)
    {
        double sessions = 0, reserved = 0, budget = 0, connections = 0;
        foreach (var raw in prometheusText.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space <= 0 || !double.TryParse(line[(space + 1)..], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value)) continue;
            var brace = line.IndexOf('{');
            var name = brace > 0 && brace < space ? line[..brace] : line[..space];
            switch (name)
            {
                case "inferencemesh_node_sessions_open": sessions = value; break;
                case "inferencemesh_node_kv_reserved_bytes": reserved = value; break;
                case "inferencemesh_node_kv_budget_bytes": budget = value; break;
                case "inferencemesh_node_connections": connections += value; break;
            }
        }
        return new SoakResult.NodeCounters((int)sessions, reserved / (1 << 20), budget / (1 << 20), (int)connections);
    }

    /// <summary>VmRSS (MiB), open file descriptors and threads of a live process; null when it is gone.</summary>
    public static (double RssMiB, int Fds, int Threads)? ReadResources(int pid)
    {
        try
        {
            double rss = -1;
            var threads = -1;
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) rss = long.Parse(line[6..].Trim().Split(' ')[0]) / 1024.0;
                else if (line.StartsWith("Threads:", StringComparison.Ordinal)) threads = int.Parse(line[8..].Trim());
            }
            if (rss < 0 || threads < 0) return null;
            return (rss, Directory.GetFileSystemEntries($"/proc/{pid}/fd").Length, threads);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>
    /// How long ago the process started, from <c>/proc/&lt;pid&gt;/stat</c>'s start time (field 22, in USER_HZ = 100 ticks
    /// per second on every Linux ABI) and <c>/proc/uptime</c>; null when it is gone. The warm-up counts from the real
    /// start, so nodes started before the soak's clock are not taken for younger than they are.
    /// </summary>
    public static TimeSpan? ProcessAge(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // The command name (field 2) may hold spaces; the fields after it are space-separated numbers.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var startTicks = long.Parse(fields[22 - 3], System.Globalization.CultureInfo.InvariantCulture);
            var uptime = double.Parse(File.ReadAllText("/proc/uptime").Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            return TimeSpan.FromSeconds(Math.Max(0, uptime - startTicks / 100.0));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    private static void Validate(SoakOptions options)
    {
        if (!OperatingSystem.IsLinux())
            throw new MeshException(MeshErrorCode.InvalidArgument, "the soak reads /proc and runs only on Linux");
        if (options.Nodes < options.Replicas || options.Replicas < 2)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"the soak needs spares: --replicas at least 2 and --nodes at least --replicas (got {options.Nodes} nodes, {options.Replicas} replicas)");
        if (options.Sessions < 1 || options.Positions < 2 || options.Prompts.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "--sessions must be at least 1, --positions at least 2, and there must be a prompt");
        if (options.Duration <= TimeSpan.Zero || options.KillPeriod <= TimeSpan.Zero || options.SampleInterval <= TimeSpan.Zero || options.SessionTimeout <= TimeSpan.Zero)
            throw new MeshException(MeshErrorCode.InvalidArgument, "--duration, --kill-period, --sample-interval and the session timeout must be positive");
    }

    /// <summary>One session's loop: a generation after another until the duration is over; each outcome recorded.</summary>
    private static async Task GenerateLoopAsync(Run run, MeshClient client, int session, IReadOnlyDictionary<string, string> references, GenerationOptions generation, CancellationToken cancellation)
    {
        var random = new Random(HashCode.Combine(run.Options.Seed, session));
        var prompts = run.Options.Prompts;
        // Spread the sessions' starts over a second so they do not all open their routes in the same instant.
        await Task.Delay(TimeSpan.FromMilliseconds(1000.0 * session / run.Options.Sessions), run.Options.Time, cancellation).ConfigureAwait(false);
        while (run.Now < run.Options.Duration.TotalSeconds)
        {
            var prompt = prompts[random.Next(prompts.Count)];
            using var deadline = new CancellationTokenSource(run.Options.SessionTimeout, run.Options.Time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, deadline.Token);
            try
            {
                var result = await client.CompleteAsync(prompt, generation, cancellation: linked.Token).ConfigureAwait(false);
                run.Complete(session, prompt, references[prompt], result);
            }
            catch (MeshException e)
            {
                run.Fail(new SoakResult.Failure(run.Now, session, prompt, true, e.Code.ToString(), nameof(MeshException), e.Message));
                // A typed failure (no route right now) is retried after a pause rather than in a tight loop.
                await Task.Delay(TimeSpan.FromSeconds(1), run.Options.Time, cancellation).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellation.IsCancellationRequested)
            {
                run.Fail(new SoakResult.Failure(run.Now, session, prompt, false, null, "Hung", $"not finished after {run.Options.SessionTimeout.TotalSeconds:F0} s"));
            }
            catch (Exception e) when (!cancellation.IsCancellationRequested)
            {
                run.Fail(new SoakResult.Failure(run.Now, session, prompt, false, null, e.GetType().FullName ?? e.GetType().Name, e.Message));
            }
        }
    }

    /// <summary>Every kill period until the duration is over: SIGKILL a random serving node, restart it, record both.</summary>
    private static async Task KillAsync(Run run, IReadOnlyList<string> nodes, TextWriter log, CancellationToken cancellation)
    {
        var random = new Random(run.Options.Seed);
        var period = run.Options.KillPeriod.TotalSeconds;
        for (var k = 1; k * period < run.Options.Duration.TotalSeconds; k++)
        {
            var wait = k * period - run.Now;
            if (wait > 0) await Task.Delay(TimeSpan.FromSeconds(wait), run.Options.Time, cancellation).ConfigureAwait(false);
            var victim = nodes[random.Next(nodes.Count)];
            var pid = run.PidOf(victim);
            var at = run.Now;
            NodeLauncher.Stop(pid, force: true);
            await NodeLauncher.WaitForExitAsync(pid, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
            int? newPid = null;
            string? error = null;
            try
            {
                var restarted = await LocalSwarm.RestartAsync(run.Options.State, victim, cancellation).ConfigureAwait(false);
                newPid = restarted.Pid;
                run.Track(victim, restarted.Pid, restarted.MetricsUrl);
            }
            catch (MeshException e)
            {
                error = e.Message;
            }
            var kill = new SoakResult.Kill(at, victim, pid, newPid, run.Now - at, error);
            run.AddKill(kill);
            log.WriteLine($"t={at:F0}s killed {victim} (pid {pid}), {(error is null ? $"restarted as pid {newPid} in {kill.RestartSeconds:F1} s" : $"restart failed: {error}")}; " +
                $"so far {run.Completed} completed, {run.Exact} exact, {run.FailureCounts.All} failed ({run.FailureCounts.Untyped} without a typed error)");
        }
    }

    private static async Task SampleAsync(Run run, CancellationToken stop)
    {
        try
        {
            while (true)
            {
                await run.SampleAllAsync(stop).ConfigureAwait(false);
                await Task.Delay(run.Options.SampleInterval, run.Options.Time, stop).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>The soak's shared record: tracked processes and outcomes, behind one lock.</summary>
    private sealed class Run(SoakOptions options, long start) : IDisposable
    {
        private readonly object _gate = new();
        private readonly Dictionary<string, (int Pid, double StartedAt, string? MetricsUrl)> _processes = new();
        // A node's scrape must not hold up the sampling of the others: a node being killed answers nothing.
        private readonly HttpClient _scraper = new() { Timeout = TimeSpan.FromSeconds(2) };
        private int _completed;
        private int _exact;
        private int _recoveries;

        public SoakOptions Options { get; } = options;
        public List<SoakResult.Mismatch> Mismatches { get; } = [];
        public List<SoakResult.Failure> Failures { get; } = [];
        public List<SoakResult.Kill> Kills { get; } = [];
        public List<SoakResult.Sample> Samples { get; } = [];
        public double Now => Options.Time.GetElapsedTime(start).TotalSeconds;
        public int Completed => Volatile.Read(ref _completed);
        public int Exact => Volatile.Read(ref _exact);
        public int Recoveries => Volatile.Read(ref _recoveries);

        public void Track(string name, int pid, string? metricsUrl = null)
        {
            var now = Now;
            var startedAt = now - (ProcessAge(pid)?.TotalSeconds ?? 0);
            lock (_gate) _processes[name] = (pid, startedAt, metricsUrl);
        }

        public int PidOf(string name)
        {
            lock (_gate) return _processes[name].Pid;
        }

        public void Complete(int session, string prompt, string expected, GenerationResult result)
        {
            Interlocked.Increment(ref _completed);
            Interlocked.Add(ref _recoveries, result.Recoveries);
            if (result.Text == expected)
            {
                Interlocked.Increment(ref _exact);
                return;
            }
            var first = 0;
            while (first < expected.Length && first < result.Text.Length && expected[first] == result.Text[first]) first++;
            lock (_gate) Mismatches.Add(new SoakResult.Mismatch(Now, session, prompt, first, expected, result.Text));
        }

        public (int All, int Untyped) FailureCounts
        {
            get
            {
                lock (_gate) return (Failures.Count, Failures.Count(f => !f.Typed));
            }
        }

        public void Fail(SoakResult.Failure failure)
        {
            lock (_gate) Failures.Add(failure);
        }

        public void AddKill(SoakResult.Kill kill)
        {
            lock (_gate) Kills.Add(kill);
        }

        public async Task SampleAllAsync(CancellationToken cancellation)
        {
            List<KeyValuePair<string, (int Pid, double StartedAt, string? MetricsUrl)>> processes;
            lock (_gate) processes = [.. _processes];
            var now = Now;
            var taken = new List<SoakResult.Sample>();
            foreach (var (name, (pid, startedAt, metricsUrl)) in processes)
                if (ReadResources(pid) is { } r)
                    taken.Add(new SoakResult.Sample(now, name, pid, now - startedAt, r.RssMiB, r.Fds, r.Threads, await ScrapeAsync(metricsUrl, cancellation).ConfigureAwait(false)));
            lock (_gate) Samples.AddRange(taken);
        }

        private async Task<SoakResult.NodeCounters?> ScrapeAsync(string? metricsUrl, CancellationToken cancellation)
        {
            if (metricsUrl is null) return null;
            try
            {
                return ParseNodeCounters(await _scraper.GetStringAsync(metricsUrl, cancellation).ConfigureAwait(false));
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellation.IsCancellationRequested)
            {
                return null;
            }
        }

        public void Dispose() => _scraper.Dispose();
    }
}
