using System.Security.Cryptography;
using System.Text;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Tests.Shared;

/// <summary>Real PeerIds (and span records) for test peers, derived from a name so a test's peers are the same every run.</summary>
public static class TestPeers
{
    public static PeerId IdFor(string name)
    {
        using var key = KeyFor(name);
        return key.PeerId;
    }

    /// <summary>The key pair behind <see cref="IdFor"/>; the caller disposes it.</summary>
    public static Ed25519KeyPair KeyFor(string name) => Ed25519KeyPair.FromSeed(SHA256.HashData(Encoding.UTF8.GetBytes($"inferencemesh test peer {name}")));

    /// <summary>A span record for a test server named <paramref name="name"/> (online, unsigned: the directory under test hands it out as is).</summary>
    public static ServerInfo Server(string name, int start, int end, double throughput = 100) => new()
    {
        Peer = IdFor(name),
        ModelId = "test-model",
        Block = start,
        Span = new BlockRange(start, end),
        Throughput = throughput,
        IssuedAt = DateTimeOffset.UnixEpoch,
        ExpiresAt = DateTimeOffset.MaxValue,
    };
}
