using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace InferenceMesh.Tests.Shared;

/// <summary>The kind of router in front of a home of a <see cref="NatTopology"/>.</summary>
internal enum NatKind
{
    /// <summary>nftables masquerade with miniupnpd answering UPnP IGD, NAT-PMP and PCP on the LAN side.</summary>
    Miniupnpd,
    /// <summary>nftables masquerade, port-preserving: endpoint-independent mapping, no port mapping (hole punching can work).</summary>
    EndpointIndependent,
    /// <summary>nftables masquerade <c>fully-random</c>: a new random source port per connection, a symmetric NAT (hole punching fails).</summary>
    Symmetric,
}

/// <summary>One home: a host namespace behind a router namespace; addresses as text.</summary>
internal sealed record NatHome(string Name, NatKind Kind, string Router, string Host, string HostAddress, string WanAddress);

/// <summary>
/// A small Internet in network namespaces, built as root with iproute2 and nftables, for NAT tests:
/// <list type="bullet">
/// <item>a "public" namespace <see cref="Public"/> holding a bridge with <see cref="PublicAddress"/> (11.13.0.1/24); each router's WAN
/// port is on that bridge (11.13.0.2–5). 11.13.0.0/24 looks globally routable (miniupnpd refuses to map when its WAN address is private or
/// reserved, documentation ranges included); it never leaves these namespaces.</item>
/// <item>home A (192.168.1.2) behind a <see cref="NatKind.Miniupnpd"/> router, B (192.168.2.2) behind an <see cref="NatKind.EndpointIndependent"/>
/// one, C (192.168.3.2) behind a <see cref="NatKind.Symmetric"/> one, D (192.168.4.2, a client's home) behind an endpoint-independent one.
/// Routers drop unsolicited inbound connections, to the LAN and to themselves (miniupnpd's forward chain lets its mappings through).</item>
/// </list>
/// Names carry this process's id, so <see cref="CreateAsync"/> first removes namespaces left by a crashed run (their process gone).
/// Dispose kills every process started here or still running in a namespace, then deletes the namespaces (their links go with them).
/// </summary>
internal sealed class NatTopology : IAsyncDisposable
{
    public const string PublicAddress = "11.13.0.1";
    private const string Prefix = "imnat";
    private static int _next;

    private readonly List<Process> _processes = [];
    private readonly List<string> _namespaces = [];
    private readonly string _directory;
    private readonly NatTopologyOptions _options;
    private Process? _miniupnpd;

    private NatTopology(string name, string directory, NatTopologyOptions options)
    {
        _directory = directory;
        _options = options;
        Public = name + "-pub";
        HomeA = new NatHome("A", NatKind.Miniupnpd, name + "-ra", name + "-ha", "192.168.1.2", "11.13.0.2");
        HomeB = new NatHome("B", NatKind.EndpointIndependent, name + "-rb", name + "-hb", "192.168.2.2", "11.13.0.3");
        HomeC = new NatHome("C", NatKind.Symmetric, name + "-rc", name + "-hc", "192.168.3.2", "11.13.0.4");
        HomeD = new NatHome("D", NatKind.EndpointIndependent, name + "-rd", name + "-hd", "192.168.4.2", "11.13.0.5");
    }

    /// <summary>The public namespace (the Internet, and a host on it at <see cref="PublicAddress"/>).</summary>
    public string Public { get; }

    public NatHome HomeA { get; }
    public NatHome HomeB { get; }
    public NatHome HomeC { get; }
    public NatHome HomeD { get; }
    public IReadOnlyList<NatHome> Homes => [HomeA, HomeB, HomeC, HomeD];

    /// <summary>miniupnpd's lease file: one <c>PROTO:EXT_PORT:INT_IP:INT_PORT:EXPIRY:DESCRIPTION</c> line per mapping it holds.</summary>
    public string LeaseFile => Path.Combine(_directory, "miniupnpd.leases");

    /// <summary>miniupnpd's log (it runs in the foreground with <c>-d</c>).</summary>
    public string MiniupnpdLog => Path.Combine(_directory, "miniupnpd.log");

    /// <summary>Why the topology cannot be built here (not root, a tool missing), or null when it can.</summary>
    public static string? Unavailable()
    {
        if (!OperatingSystem.IsLinux()) return "network namespaces need Linux";
        if (Environment.UserName != "root") return $"building network namespaces needs root (running as {Environment.UserName})";
        foreach (var (tool, package) in new[] { ("ip", "iproute2"), ("nft", "nftables"), ("miniupnpd", "miniupnpd-nftables") })
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
                return $"'{tool}' is missing: apt-get install {package}";
        return null;
    }

    /// <summary>Builds the topology and starts miniupnpd for home A; throws when <see cref="Unavailable"/> says why it cannot.</summary>
    public static async Task<NatTopology> CreateAsync(NatTopologyOptions? options = null)
    {
        if (Unavailable() is { } why) throw new InvalidOperationException(why);
        await RemoveStaleAsync();
        var name = $"{Prefix}{Environment.ProcessId}x{Interlocked.Increment(ref _next)}";
        var directory = Directory.CreateTempSubdirectory(name + "-").FullName;
        var topology = new NatTopology(name, directory, options ?? new NatTopologyOptions());
        try
        {
            await topology.BuildAsync();
            await topology.StartMiniupnpdAsync();
            return topology;
        }
        catch
        {
            await topology.DisposeAsync();
            throw;
        }
    }

    private async Task BuildAsync()
    {
        var script = new StringBuilder();
        void Ns(string ns)
        {
            _namespaces.Add(ns);
            script.AppendLine($"ip netns add {ns}").AppendLine($"ip -n {ns} link set lo up");
        }
        Ns(Public);
        script.AppendLine($"ip -n {Public} link add br0 type bridge")
            .AppendLine($"ip -n {Public} addr add {PublicAddress}/24 dev br0")
            .AppendLine($"ip -n {Public} link set br0 up");
        var index = 0;
        foreach (var home in Homes)
        {
            index++;
            Ns(home.Router);
            Ns(home.Host);
            var lan = home.HostAddress[..home.HostAddress.LastIndexOf('.')];
            script.AppendLine($"ip -n {Public} link add p{index} type veth peer name wan netns {home.Router}")
                .AppendLine($"ip -n {Public} link set p{index} master br0 up")
                .AppendLine($"ip -n {home.Router} addr add {home.WanAddress}/24 dev wan")
                .AppendLine($"ip -n {home.Router} link set wan up")
                .AppendLine($"ip -n {home.Router} link add lan type veth peer name eth0 netns {home.Host}")
                .AppendLine($"ip -n {home.Router} addr add {lan}.1/24 dev lan")
                .AppendLine($"ip -n {home.Router} link set lan up")
                .AppendLine($"ip -n {home.Router} route add default via {PublicAddress}")
                .AppendLine($"ip netns exec {home.Router} sysctl -qw net.ipv4.ip_forward=1")
                .AppendLine($"ip -n {home.Host} addr add {home.HostAddress}/24 dev eth0")
                .AppendLine($"ip -n {home.Host} link set eth0 up")
                .AppendLine($"ip -n {home.Host} route add default via {lan}.1")
                .AppendLine($"ip netns exec {home.Router} nft -f - <<'NFT'")
                .AppendLine(RouterRules(home.Kind))
                .AppendLine("NFT");
        }
        var (code, _, error) = await RunAsync("bash", ["-euo", "pipefail", "-c", script.ToString()]);
        if (code != 0) throw new InvalidOperationException($"building the NAT topology failed: {error}");
    }

    // The Debian package lacks the helper that creates miniupnpd's chains: table inet filter with miniupnpd (forward),
    // prerouting_miniupnpd and postrouting_miniupnpd (nat), named in its configuration. Every router drops, rather than
    // refuses, a new connection from the WAN to itself, as home routers do: a hole punch's first SYN often reaches the far
    // router before that side's own SYN has opened it, and a RST there (the kernel's answer for a closed port) would end
    // the punch where a drop lets the SYN's retransmission through.
    private static string RouterRules(NatKind kind) => kind switch
    {
        NatKind.Miniupnpd => """
            table inet filter {
              chain input {
                type filter hook input priority 0; policy accept;
                iifname "wan" ct state new drop
              }
              chain forward {
                type filter hook forward priority 0; policy accept;
                jump miniupnpd
                iifname "wan" ct state new drop
              }
              chain miniupnpd {
              }
              chain prerouting {
                type nat hook prerouting priority -100; policy accept;
                jump prerouting_miniupnpd
              }
              chain postrouting {
                type nat hook postrouting priority 100; policy accept;
                jump postrouting_miniupnpd
                oifname "wan" masquerade
              }
              chain prerouting_miniupnpd {
              }
              chain postrouting_miniupnpd {
              }
            }
            """,
        _ => $$"""
            table inet nat {
              chain input {
                type filter hook input priority 0; policy accept;
                iifname "wan" ct state new drop
              }
              chain forward {
                type filter hook forward priority 0; policy accept;
                iifname "wan" ct state new drop
              }
              chain postrouting {
                type nat hook postrouting priority 100; policy accept;
                oifname "wan" masquerade{{(kind == NatKind.Symmetric ? " fully-random" : "")}}
              }
            }
            """,
    };

    private async Task StartMiniupnpdAsync()
    {
        var config = Path.Combine(_directory, "miniupnpd.conf");
        await File.WriteAllTextAsync(config, $"""
            ext_ifname=wan
            listening_ip=lan
            http_port=5000
            enable_upnp={(_options.Upnp ? "yes" : "no")}
            enable_natpmp={(_options.NatPmpAndPcp ? "yes" : "no")}
            secure_mode=yes
            system_uptime=no
            upnp_table_name=filter
            upnp_nat_table_name=filter
            upnp_forward_chain=miniupnpd
            upnp_nat_chain=prerouting_miniupnpd
            upnp_nat_postrouting_chain=postrouting_miniupnpd
            lease_file={LeaseFile}
            uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b
            allow 1024-65535 192.168.1.0/24 1024-65535
            deny 0-65535 0.0.0.0/0 0-65535

            """);
        var ready = _options.Upnp ? "HTTP listening on port" : "Listening for NAT-PMP/PCP traffic";
        _miniupnpd = Start(HomeA.Router, "/usr/sbin/miniupnpd", ["-f", config, "-d", "-P", Path.Combine(_directory, "miniupnpd.pid")], MiniupnpdLog);
        await Poll.UntilAsync(() => File.Exists(MiniupnpdLog) && File.ReadAllText(MiniupnpdLog).Contains(ready) || _miniupnpd.HasExited,
            "miniupnpd to start", 10, 20);
        if (_miniupnpd.HasExited) throw new InvalidOperationException($"miniupnpd exited: {File.ReadAllText(MiniupnpdLog)}");
    }

    /// <summary>
    /// Makes home A's router forget every mapping, as a reboot would: stops miniupnpd, empties its chains and lease file, starts it again.
    /// </summary>
    public async Task RebootMiniupnpdAsync()
    {
        if (_miniupnpd is { } old)
        {
            old.Kill();
            await old.WaitForExitAsync();
            _processes.Remove(old);
            old.Dispose();
        }
        foreach (var chain in new[] { "miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd" })
            await ExecAsync(HomeA.Router, "nft", "flush", "chain", "inet", "filter", chain);
        File.Delete(LeaseFile);
        File.Delete(MiniupnpdLog);
        await StartMiniupnpdAsync();
    }

    /// <summary>The mappings miniupnpd holds now, from its lease file: (external port, internal address, internal port, expiry in its clock's seconds).</summary>
    public IReadOnlyList<(int ExternalPort, string InternalAddress, int InternalPort, long Expiry)> Leases() =>
        !File.Exists(LeaseFile) ? [] : File.ReadAllLines(LeaseFile)
            .Select(l => l.Split(':'))
            .Where(f => f.Length >= 5 && f[0] == "TCP")
            .Select(f => (int.Parse(f[1]), f[2], int.Parse(f[3]), long.Parse(f[4])))
            .ToList();

    /// <summary>
    /// Starts <c>delay_forwarder.py</c> in the public namespace: a TCP forwarder from <see cref="PublicAddress"/>:<paramref name="port"/> to
    /// <see cref="PublicAddress"/>:<paramref name="targetPort"/> that holds every byte <paramref name="delayMs"/> ms each way (user-space
    /// link delay: no netem here, and nftables cannot delay). Returns once it listens; killed on dispose. Needs python3.
    /// </summary>
    public async Task StartDelayForwarderAsync(int port, int targetPort, int delayMs)
    {
        var script = Path.Combine(TestModels.RepositoryRoot, "tests", "Shared", "Nat", "delay_forwarder.py");
        var forwarder = Start(Public, "python3", [script, PublicAddress, port.ToString(), PublicAddress, targetPort.ToString(), delayMs.ToString()]);
        var ready = await forwarder.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(20));
        if (ready != "ready") throw new InvalidOperationException($"the delay forwarder did not start: {await forwarder.StandardError.ReadToEndAsync()}");
    }

    /// <summary>Runs a command in a namespace to its end.</summary>
    public Task<(int Code, string Out, string Error)> ExecAsync(string ns, string file, params string[] args) =>
        RunAsync("ip", ["netns", "exec", ns, file, .. args]);

    /// <summary>Starts a process in a namespace whose JSON stdout lines and stderr are collected; killed on dispose.</summary>
    public NamespaceProcess StartCollected(string ns, string file, params string[] args) => new(Start(ns, file, args));

    /// <summary>Starts a long-running process in a namespace (output to <paramref name="logFile"/> when given, else readable by the caller); killed on dispose.</summary>
    public Process Start(string ns, string file, IReadOnlyList<string> args, string? logFile = null)
    {
        var start = new ProcessStartInfo("ip", ["netns", "exec", ns, file, .. args])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = false, UseShellExecute = false,
        };
        var process = Process.Start(start)!;
        lock (_processes) _processes.Add(process);
        if (logFile is not null)
        {
            var sink = TextWriter.Synchronized(new StreamWriter(logFile, append: true) { AutoFlush = true });
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) sink.WriteLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) sink.WriteLine(e.Data); };
            process.Exited += (_, _) => sink.Dispose();
            process.EnableRaisingEvents = true;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }
        return process;
    }

    private static async Task<(int Code, string Out, string Error)> RunAsync(string file, IReadOnlyList<string> args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Removes namespaces of this naming whose creating process is gone (a crashed or killed test run), with what runs in them.</summary>
    private static async Task RemoveStaleAsync()
    {
        var (_, list, _) = await RunAsync("ip", ["netns", "list"]);
        foreach (Match m in Regex.Matches(list, $@"^({Prefix}(\d+)x\d+-\w+)", RegexOptions.Multiline))
        {
            var pid = int.Parse(m.Groups[2].Value);
            if (pid == Environment.ProcessId || Directory.Exists($"/proc/{pid}")) continue;
            await DeleteNamespaceAsync(m.Groups[1].Value);
        }
    }

    private static async Task DeleteNamespaceAsync(string ns)
    {
        var (_, pids, _) = await RunAsync("ip", ["netns", "pids", ns]);
        foreach (var pid in pids.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            try
            {
                using var p = Process.GetProcessById(int.Parse(pid));
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync();
            }
            catch (ArgumentException)
            {
                // already gone
            }
        }
        await RunAsync("ip", ["netns", "del", ns]);
    }

    public async ValueTask DisposeAsync()
    {
        List<Process> processes;
        lock (_processes) processes = [.. _processes];
        foreach (var process in processes)
        {
            try
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // never started or already reaped
            }
            process.Dispose();
        }
        foreach (var ns in _namespaces)
            await DeleteNamespaceAsync(ns);
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // a log still being flushed; the temp directory is left for the OS to clean
        }
    }
}

/// <summary>What home A's miniupnpd answers.</summary>
internal sealed record NatTopologyOptions
{
    public bool Upnp { get; init; } = true;

    /// <summary>miniupnpd serves NAT-PMP and PCP together on UDP 5351 (<c>enable_natpmp</c>).</summary>
    public bool NatPmpAndPcp { get; init; } = true;
}
