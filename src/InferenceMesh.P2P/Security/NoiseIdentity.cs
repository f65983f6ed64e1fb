using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// A host's Noise identity: its Ed25519 identity, a static X25519 key and the identity signature over
/// <c>"noise-libp2p-static-key:" ‖ static key</c>, computed once. Thread-safe; dispose with the host.
/// </summary>
public sealed class NoiseIdentity : IDisposable
{
    internal X25519KeyPair Static { get; }
    internal byte[] Signature { get; set; } // settable for hostile-input tests only

    /// <summary>Creates a fresh static key for <paramref name="identity"/> (which stays owned by the caller).</summary>
    public NoiseIdentity(Ed25519KeyPair identity)
    {
        Identity = identity;
        Static = new X25519KeyPair();
        Signature = identity.Sign(Noise.SignedData(Static.PublicKey));
    }

    /// <summary>The identity key this Noise identity signs with.</summary>
    public Ed25519KeyPair Identity { get; }

    public void Dispose() => Static.Dispose();
}
