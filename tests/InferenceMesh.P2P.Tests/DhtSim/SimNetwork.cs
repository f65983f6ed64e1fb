using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>Latency, loss and timeouts of the simulated network.</summary>
public sealed record SimNetworkOptions
{
    /// <summary>One-way latency range, uniform, in milliseconds.</summary>
    public int MinLatencyMs { get; init; } = 10;
    public int MaxLatencyMs { get; init; } = 100;

    /// <summary>Probability that one message (request or response) is lost.</summary>
    public double LossRate { get; init; } = 0.01;

    /// <summary>Encode and decode every message through the real kad-dht codec (about 3x slower: each decoded PeerId costs a sha256).</summary>
    public bool RoundTripCodec { get; init; }
}

/// <summary>One simulated node: a real <see cref="KadDht"/> and whether it is up.</summary>
public sealed class SimNode(KadPeer peer, KadDht dht)
{
    public KadPeer Peer { get; } = peer;
    public KadDht Dht { get; } = dht;
    public bool Online { get; set; } = true;

    /// <summary>A hostile node's rewrite of each response it sends; null for an honest node.</summary>
    public Func<KadMessage, KadMessage>? Tamper { get; set; }
}

/// <summary>
/// An in-memory network carrying kad-dht messages between <see cref="SimNode"/>s in virtual time. Requests to
/// nodes that are down, or lost requests or responses, fail after the request timeout, as a silent peer does.
/// </summary>
public sealed class SimNetwork(SimScheduler scheduler, SimNetworkOptions options, int seed)
{
    private readonly Random _random = new(seed);
    private readonly Dictionary<PeerId, SimNode> _nodes = [];

    public SimScheduler Scheduler { get; } = scheduler;
    public SimNetworkOptions Options { get; } = options;
    public long MessagesDelivered { get; private set; }

    public IReadOnlyDictionary<PeerId, SimNode> Nodes => _nodes;

    public void Add(SimNode node) => _nodes.Add(node.Peer.Id, node);

    /// <summary>The <see cref="IKadNetwork"/> a node with identity <paramref name="self"/> uses.</summary>
    public IKadNetwork For(KadPeer self) => new Endpoint(this, self);

    private long Latency() => _random.Next(Options.MinLatencyMs, Options.MaxLatencyMs + 1);

    private bool Lost() => Options.LossRate > 0 && _random.NextDouble() < Options.LossRate;

    private KadMessage Wire(KadMessage m) => Options.RoundTripCodec ? KadMessage.Decode(m.Encode()) : m;

    private sealed class Endpoint(SimNetwork net, KadPeer self) : IKadNetwork
    {
        public Task<KadMessage> SendRequestAsync(KadPeer peer, KadMessage request, TimeSpan timeout, CancellationToken cancellationToken) =>
            Send(peer, request, timeout, true, cancellationToken)!;

        public Task SendMessageAsync(KadPeer peer, KadMessage message, TimeSpan timeout, CancellationToken cancellationToken) =>
            Send(peer, message, timeout, false, cancellationToken);

        private Task<KadMessage> Send(KadPeer peer, KadMessage request, TimeSpan timeout, bool expectResponse, CancellationToken ct)
        {
            var tcs = new TaskCompletionSource<KadMessage>();
            if (ct.IsCancellationRequested)
            {
                tcs.SetCanceled(ct);
                return tcs.Task;
            }
            var sched = net.Scheduler;
            var sentAt = sched.NowMs;
            var timeoutMs = (long)timeout.TotalMilliseconds;
            var reg = ct.CanBeCanceled ? ct.Register(() => tcs.TrySetCanceled(ct)) : default;
            void Fail(string why) => sched.At(sentAt + timeoutMs - sched.NowMs, () =>
            {
                reg.Dispose();
                tcs.TrySetException(new DhtException(DhtErrorCode.Unreachable, why));
            });
            var wireRequest = net.Wire(request);
            if (!net._nodes.TryGetValue(peer.Id, out var target) || net.Lost())
            {
                Fail("no answer");
                return tcs.Task;
            }
            sched.At(net.Latency(), () =>
            {
                if (tcs.Task.IsCompleted) return;
                if (!target.Online)
                {
                    Fail("peer is down");
                    return;
                }
                net.MessagesDelivered++;
                KadMessage? response;
                try
                {
                    var selfNode = net._nodes.GetValueOrDefault(self.Id);
                    var isServer = selfNode is not null && selfNode.Dht.Options.Mode == DhtMode.Server;
                    response = target.Dht.HandleRequest(self, isServer, wireRequest);
                    if (response is not null && target.Tamper is { } tamper)
                        response = tamper(response);
                }
                catch (DhtException e)
                {
                    // The remote resets the stream: the caller learns at once (one latency later).
                    sched.At(net.Latency(), () => { reg.Dispose(); tcs.TrySetException(new DhtException(DhtErrorCode.Unreachable, "stream reset: " + e.Message)); });
                    return;
                }
                if (!expectResponse)
                {
                    reg.Dispose();
                    tcs.TrySetResult(request);
                    return;
                }
                if (response is null || net.Lost())
                {
                    Fail("response lost");
                    return;
                }
                var wireResponse = net.Wire(response);
                sched.At(net.Latency(), () =>
                {
                    reg.Dispose();
                    tcs.TrySetResult(wireResponse);
                });
            });
            return tcs.Task;
        }
    }
}
