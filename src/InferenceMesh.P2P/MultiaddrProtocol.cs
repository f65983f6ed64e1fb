namespace InferenceMesh.P2P;

/// <summary>A multiaddr protocol this implementation knows, with its multicodec code.</summary>
public enum MultiaddrProtocol
{
    Ip4 = 4,
    Tcp = 6,
    Ip6 = 41,
    Dns = 53,
    Dns4 = 54,
    Dns6 = 55,
    Udp = 273,
    P2pCircuit = 290,
    P2p = 421,
    /// <summary>In-process transport address (<c>/memory/&lt;u64&gt;</c>), used by tests and benchmarks.</summary>
    Memory = 777,
}
