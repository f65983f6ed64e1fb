using System.CommandLine;
using System.Text;
using System.Text.Json;
using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh dht get|put|provide|find-providers|find-peer</c>: one DHT operation through
/// <c>--bootstrap</c> peers, printed as one JSON object (with the lookup's messages, failures and hops).
/// Keys are UTF-8 text such as <c>/mesh/hello</c> or <c>/span/&lt;modelId&gt;/0</c>, or hex with <c>--hex</c>.
/// </summary>
public static class DhtCommand
{
    private static readonly Option<string[]> Bootstrap = new("--bootstrap") { Description = "Peers to join through (multiaddrs with /p2p/)", Required = true, AllowMultipleArgumentsPerToken = true, Recursive = true };
    private static readonly Option<bool> Hex = new("--hex") { Description = "Keys and values are hex, not UTF-8 text", Recursive = true };

    public static Command Create(ICliConsole console)
    {
        var command = new Command("dht", "Run one operation on the mesh's Kademlia DHT and print the result as JSON") { Bootstrap, Hex };
        var key = new Argument<string>("key");
        var value = new Argument<string>("value");
        var cid = new Argument<string>("cid") { Description = "CIDv0 (Qm…) or base32 CIDv1 (b…)" };
        var peer = new Argument<string>("peer") { Description = "PeerId (12D3KooW…)" };

        command.Subcommands.Add(Verb(console, "get", "Look up a record", [key], async (dht, parse, ct) =>
        {
            var bytes = Key(parse, key);
            var result = await dht.Dht.GetValueAsync(bytes, ct);
            if (result.Value is not null && RecordValidators.NamespaceOf(bytes) == SpanRecordValidator.Namespace)
            {
                // Span records are signed binary entries: show them decoded (signatures and expiry already checked).
                var servers = new SpanRecordValidator().ReadEntries(bytes, result.Value).Select(i => new
                {
                    peerId = i.Peer.ToString(), addresses = i.Addresses.Select(a => a.ToString()), i.Block, span = i.Span.ToString(),
                    i.Throughput, state = i.State.ToString(), i.FreeCacheTokens, i.ExpiresAt,
                });
                return new { found = true, servers, stats = result.Stats };
            }
            return new { found = result.Value is not null, value = result.Value is null ? null : Text(parse, result.Value), stats = result.Stats };
        }));
        command.Subcommands.Add(Verb(console, "put", "Store a record on the closest peers", [key, value], async (dht, parse, ct) =>
        {
            var bytes = parse.GetValue(Hex) ? Convert.FromHexString(parse.GetValue(value)!) : Encoding.UTF8.GetBytes(parse.GetValue(value)!);
            var stored = await dht.Dht.PutValueAsync(Key(parse, key), bytes, republish: false, ct);
            return new { stored };
        }));
        command.Subcommands.Add(Verb(console, "provide", "Announce that this peer provides a CID (only while this command runs)", [cid], async (dht, parse, ct) =>
        {
            var stored = await dht.Dht.ProvideAsync(Cid.Multihash(parse.GetValue(cid)!), ct);
            return new { stored };
        }));
        command.Subcommands.Add(Verb(console, "find-providers", "List the peers that provide a CID", [cid], async (dht, parse, ct) =>
        {
            var result = await dht.Dht.FindProvidersAsync(Cid.Multihash(parse.GetValue(cid)!), 20, ct);
            return new { providers = result.Providers.Select(Peer), stats = result.Stats };
        }));
        command.Subcommands.Add(Verb(console, "find-peer", "Find a peer's addresses", [peer], async (dht, parse, ct) =>
        {
            var result = await dht.Dht.FindPeerAsync(PeerId.Parse(parse.GetValue(peer)!), ct);
            return new { found = result.Peer is not null, peer = result.Peer is null ? null : Peer(result.Peer), stats = result.Stats };
        }));
        return command;
    }

    private static Command Verb(ICliConsole console, string name, string description, Argument[] arguments, Func<MeshPeer, ParseResult, CancellationToken, Task<object>> run)
    {
        var command = new Command(name, description);
        foreach (var argument in arguments) command.Arguments.Add(argument);
        command.SetAction(async (parse, cancellation) =>
        {
            using var key = Ed25519KeyPair.Generate();
            await using var peer = await MeshPeer.StartAsync(new MeshPeerOptions
            {
                Identity = key,
                Bootstrap = parse.GetValue(Bootstrap)!.Select(Multiaddr.Parse).ToList(),
                RequireBootstrap = true,
            }, cancellation);
            var result = await run(peer, parse, cancellation);
            console.Out.WriteLine(JsonSerializer.Serialize(result, CliJson.Options));
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static byte[] Key(ParseResult parse, Argument<string> key) =>
        parse.GetValue(Hex) ? Convert.FromHexString(parse.GetValue(key)!) : Encoding.UTF8.GetBytes(parse.GetValue(key)!);

    private static string Text(ParseResult parse, byte[] bytes) =>
        parse.GetValue(Hex) ? Convert.ToHexStringLower(bytes) : Encoding.UTF8.GetString(bytes);

    private static object Peer(KadPeer peer) => new { peerId = peer.Id.ToString(), addresses = peer.Addresses.Select(a => a.ToString()) };
}
