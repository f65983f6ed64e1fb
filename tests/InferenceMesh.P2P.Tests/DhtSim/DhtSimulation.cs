using System.Diagnostics;
using System.Net;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>What one batch of lookups measured.</summary>
public sealed record SimFigures(int Nodes, string Phase, string Kind, int Lookups, double SuccessRate, double HopsMedian, double HopsP99, double MessagesMean, double LatencyMedianMs);

/// <summary>Settings of one simulation run.</summary>
public sealed record SimOptions
{
    public int Nodes { get; init; } = 1000;
    public int Seed { get; init; } = 42;
    public int PeerLookups { get; init; } = 500;
    public int ValueKeys { get; init; } = 100;
    public int ValueLookups { get; init; } = 300;
    public double ChurnFraction { get; init; } = 0.25;
    public int BootstrapSeeds { get; init; } = 3;
    public SimNetworkOptions Network { get; init; } = new();
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// Builds a DHT of real <see cref="KadDht"/> nodes over a <see cref="SimNetwork"/>, measures peer and value
/// lookups, makes a fraction leave and as many new ones join without notice, and measures again.
/// </summary>
public sealed class DhtSimulation
{
    private readonly SimOptions _o;
    private readonly Random _random;
    private readonly SimScheduler _sched = new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
    private readonly SimNetwork _net;
    private readonly List<SimNode> _all = [];
    private readonly List<(byte[] Key, byte[] Value)> _values = [];
    private int _nextId;

    public DhtSimulation(SimOptions options)
    {
        _o = options;
        _random = new Random(options.Seed);
        _net = new SimNetwork(_sched, options.Network, options.Seed ^ 0x5eed);
    }

    public SimScheduler Scheduler => _sched;
    public SimNode Nodes(PeerId id) => _net.Nodes[id];
    public IReadOnlyList<SimNode> AllNodes => _all;
    public IEnumerable<SimNode> Online => _all.Where(n => n.Online);
    public TimeSpan BuildTime { get; private set; }

    public RecordValidators Validators() => RecordValidators.WithDefaults()
        .Add("sim", new OpaqueRecordValidator())
        .Add(SpanRecordValidator.Namespace, new SpanRecordValidator(_sched))
        .Add(FraudRecordValidator.Namespace, new FraudRecordValidator(_sched))
        .Add(BlobRecordValidator.Namespace, new BlobRecordValidator());

    /// <summary>Seeds of the identities, by node, so tests can sign as a node.</summary>
    public Dictionary<PeerId, byte[]> IdentitySeeds { get; } = [];

    /// <summary>Options each new node gets, after the simulator's own (clock, seed, timeout, validators).</summary>
    public Func<KadDhtOptions, KadDhtOptions> Configure { get; init; } = o => o;

    /// <summary>Adds one node and joins it through random online nodes.</summary>
    /// <param name="ip">The node's address; a random one when null (a Sybil test gives many nodes one /24).</param>
    public SimNode AddAndJoin(Func<KadDhtOptions, KadDhtOptions>? configure = null, IPAddress? ip = null)
    {
        var live = Online.ToList();
        if (live.Count == 0) live = [.. _all]; // all down: try them anyway (and fail)
        var n = NewNode(configure, ip);
        if (live.Count > 0) Join(n, live);
        return n;
    }

    private SimNode NewNode(Func<KadDhtOptions, KadDhtOptions>? configure = null, IPAddress? fixedIp = null)
    {
        var seed = new byte[32];
        _random.NextBytes(seed);
        PeerId id;
        using (var kp = Ed25519KeyPair.FromSeed(seed)) id = kp.PeerId;
        IdentitySeeds[id] = seed;
        var ip = fixedIp ?? new IPAddress([(byte)_random.Next(1, 224), (byte)_random.Next(256), (byte)_random.Next(256), (byte)_random.Next(1, 255)]);
        var addr = Multiaddr.Parse($"/ip4/{ip}/tcp/4001");
        var peer = new KadPeer(id, [addr]);
        var dht = new KadDht(id, _net.For(peer), Configure(new KadDhtOptions
        {
            Time = _sched,
            Seed = _nextId++ ^ _o.Seed,
            RequestTimeout = _o.RequestTimeout,
            // The simulated network has no transient refusals, and its scheduler runs no timers.
            BootstrapAttempts = 1,
            Validators = Validators(),
        })) { LocalAddresses = [addr] };
        if (configure is not null)
            dht = new KadDht(id, _net.For(peer), configure(dht.Options)) { LocalAddresses = [addr] };
        var node = new SimNode(peer, dht);
        _net.Add(node);
        _all.Add(node);
        return node;
    }

    private void Join(SimNode node, List<SimNode> live)
    {
        var seeds = new List<KadPeer>();
        for (var i = 0; i < _o.BootstrapSeeds && live.Count > 0; i++)
            seeds.Add(live[_random.Next(live.Count)].Peer);
        _sched.Run(() => node.Dht.BootstrapAsync(seeds));
        _sched.Drain();
    }

    /// <summary>Creates and joins every node, one after another, each through a few random earlier ones.</summary>
    public void Build()
    {
        var sw = Stopwatch.StartNew();
        var first = NewNode();
        var live = new List<SimNode> { first };
        for (var i = 1; i < _o.Nodes; i++)
        {
            var n = NewNode();
            Join(n, live);
            live.Add(n);
        }
        BuildTime = sw.Elapsed;
    }

    /// <summary>Publishes <see cref="SimOptions.ValueKeys"/> records from random nodes.</summary>
    public void PublishValues()
    {
        var live = Online.ToList();
        for (var i = 0; i < _o.ValueKeys; i++)
        {
            var key = System.Text.Encoding.UTF8.GetBytes($"/sim/key-{i}");
            var value = System.Text.Encoding.UTF8.GetBytes($"value-{i}");
            _values.Add((key, value));
            var from = live[_random.Next(live.Count)];
            _sched.Run(() => from.Dht.PutValueAsync(key, value, republish: false));
            _sched.Drain();
        }
    }

    /// <summary>Makes <see cref="SimOptions.ChurnFraction"/> of the nodes go down silently and as many new nodes join.</summary>
    public void Churn()
    {
        var live = Online.ToList();
        var leave = (int)(live.Count * _o.ChurnFraction);
        var order = live.OrderBy(_ => _random.Next()).ToList();
        foreach (var n in order.Take(leave)) n.Online = false;
        var remaining = order.Skip(leave).ToList();
        // The newcomers join at once (in virtual time), each through a few random survivors.
        var joins = new List<(SimNode Node, List<KadPeer> Seeds)>();
        for (var i = 0; i < leave; i++)
        {
            var n = NewNode();
            var seeds = new List<KadPeer>();
            for (var s = 0; s < _o.BootstrapSeeds; s++)
                seeds.Add(remaining[_random.Next(remaining.Count)].Peer);
            joins.Add((n, seeds));
        }
        _sched.Run(() => Task.WhenAll(joins.Select(j => j.Node.Dht.BootstrapAsync(j.Seeds))));
        _sched.Drain();
    }

    public SimFigures MeasurePeerLookups(string phase)
    {
        var live = Online.ToList();
        var hops = new List<int>();
        var messages = new List<int>();
        var latency = new List<long>();
        var ok = 0;
        for (var i = 0; i < _o.PeerLookups; i++)
        {
            var from = live[_random.Next(live.Count)];
            SimNode to;
            do to = live[_random.Next(live.Count)]; while (to == from);
            var t0 = _sched.NowMs;
            var r = _sched.Run(() => from.Dht.FindPeerAsync(to.Peer.Id));
            latency.Add(_sched.NowMs - t0);
            _sched.Drain();
            messages.Add(r.Stats.Messages);
            if (r.Peer is not null) { ok++; hops.Add(r.Stats.Hops); }
        }
        return Figures(phase, "find-peer", _o.PeerLookups, ok, hops, messages, latency);
    }

    public SimFigures MeasureValueLookups(string phase)
    {
        var live = Online.ToList();
        var hops = new List<int>();
        var messages = new List<int>();
        var latency = new List<long>();
        var ok = 0;
        for (var i = 0; i < _o.ValueLookups; i++)
        {
            var from = live[_random.Next(live.Count)];
            var (key, value) = _values[_random.Next(_values.Count)];
            var t0 = _sched.NowMs;
            var r = _sched.Run(() => from.Dht.GetValueAsync(key));
            latency.Add(_sched.NowMs - t0);
            _sched.Drain();
            messages.Add(r.Stats.Messages);
            if (r.Value is not null && r.Value.AsSpan().SequenceEqual(value)) { ok++; hops.Add(r.Stats.Hops); }
        }
        return Figures(phase, "get-value", _o.ValueLookups, ok, hops, messages, latency);
    }

    private SimFigures Figures(string phase, string kind, int n, int ok, List<int> hops, List<int> messages, List<long> latency)
    {
        var hopCounts = hops.Select(h => (double)h).ToList();
        return new SimFigures(Online.Count(), phase, kind, n, (double)ok / n,
            Statistics.Median(hopCounts), Statistics.Percentile(hopCounts, 0.99), messages.Count == 0 ? 0 : messages.Average(),
            Statistics.Median(latency.Select(x => (double)x)));
    }

    /// <summary>The whole scenario: build, publish, measure, churn, measure.</summary>
    public List<SimFigures> RunScenario()
    {
        Build();
        PublishValues();
        var figures = new List<SimFigures> { MeasurePeerLookups("before churn"), MeasureValueLookups("before churn") };
        Churn();
        figures.Add(MeasurePeerLookups("after churn"));
        figures.Add(MeasureValueLookups("after churn"));
        return figures;
    }
}
