using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests.Dht;

/// <summary>
/// C# DHT peers and a js-libp2p @libp2p/kad-dht 16.x server in one DHT on /ipfs/kad/1.0.0, both directions.
/// The js side is tests/interop/kad-peer.mjs with the packages of <c>npm ci --prefix tests/interop</c>.
/// </summary>
public sealed class KadInteropTests(ITestOutputHelper output)
{
    private sealed class JsKadPeer : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly ITestOutputHelper _output;

        private JsKadPeer(Process p, ITestOutputHelper output) { _process = p; _output = output; }

        public PeerId PeerId { get; private set; } = null!;
        public Multiaddr Address { get; private set; } = null!;

        public static async Task<JsKadPeer> StartAsync(string dir, ITestOutputHelper output)
        {
            var psi = new ProcessStartInfo("node", [Path.Combine(dir, "kad-peer.mjs")])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = dir,
            };
            var p = Process.Start(psi)!;
            p.ErrorDataReceived += (_, e) => { if (e.Data is not null) try { output.WriteLine("js: " + e.Data); } catch (InvalidOperationException) { } };
            p.BeginErrorReadLine();
            var peer = new JsKadPeer(p, output);
            var ready = await peer.ReadAsync();
            peer.PeerId = PeerId.Parse(ready.GetProperty("peerId").GetString()!);
            peer.Address = Multiaddr.Parse(ready.GetProperty("addrs")[0].GetString()!).WithPeerId(peer.PeerId);
            return peer;
        }

        private async Task<JsonElement> ReadAsync()
        {
            var line = await _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30))
                ?? throw new InvalidOperationException("js peer exited");
            _output.WriteLine("js> " + line);
            return JsonDocument.Parse(line).RootElement;
        }

        public async Task<JsonElement> CallAsync(object command)
        {
            await _process.StandardInput.WriteLineAsync(JsonSerializer.Serialize(command));
            await _process.StandardInput.FlushAsync();
            var r = await ReadAsync();
            Assert.True(r.GetProperty("ok").GetBoolean(), r.ToString());
            return r;
        }

        public async ValueTask DisposeAsync()
        {
            try { _process.StandardInput.Close(); } catch (IOException) { }
            if (!_process.WaitForExit(5000)) _process.Kill(entireProcessTree: true);
            _process.Dispose();
        }
    }

    private static async Task<(Libp2pHost Host, KadDht Dht, Ed25519KeyPair Key)> StartCSharpAsync()
    {
        var key = Ed25519KeyPair.Generate();
        var host = TestHosts.Create(null, key: key);
        await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], TestHosts.Token());
        var net = new Libp2pKadNetwork(host, KadDhtOptions.IpfsProtocolId);
        var dht = new KadDht(host.PeerId, net, new KadDhtOptions
        {
            ProtocolId = KadDhtOptions.IpfsProtocolId,
            Validators = RecordValidators.WithDefaults().Add("mesh", new OpaqueRecordValidator()),
        });
        net.Attach(dht);
        return (host, dht, key);
    }

    [Fact]
    public async Task CSharpAndJsKadDhtPeersShareOneDht()
    {
        var dir = JsPeer.InteropDir();
        if (!Directory.Exists(Path.Combine(dir, "node_modules", "@libp2p", "kad-dht")))
            Assert.Fail($"@libp2p/kad-dht is not installed in {dir}/node_modules: run `npm ci --prefix tests/interop` (needs Node >= 20).");
        await using var js = await JsKadPeer.StartAsync(dir, output);
        var (hostA, a, keyA) = await StartCSharpAsync();
        var (hostB, b, keyB) = await StartCSharpAsync();
        try
        {
            var jsPeer = new KadPeer(js.PeerId, [js.Address.WithoutPeerId()]);
            // C# → js: PING and FIND_NODE during bootstrap; js learns A through Identify when A dials it
            await a.BootstrapAsync([jsPeer], TestHosts.Token(30)).Within(40);
            Assert.True(a.RoutingTable.Contains(js.PeerId));
            await b.BootstrapAsync([new KadPeer(hostA.PeerId, hostA.ListenAddresses), jsPeer], TestHosts.Token(30)).Within(40);
            var rt = await js.CallAsync(new { op = "rt" });
            output.WriteLine($"js routing table: {rt.GetProperty("rt").GetInt32()}");

            // js → C#: FIND_NODE answered by A names B
            var found = await js.CallAsync(new { op = "findPeer", peerId = hostB.PeerId.ToString() });
            Assert.Contains(found.GetProperty("addrs").EnumerateArray(), x => x.GetString()!.Contains(hostB.ListenAddresses[0].ToString().Split("/tcp/")[1]));

            // C# PUT /pk/ → js GET
            var pkKey = PublicKeyRecordValidator.KeyFor(hostA.PeerId);
            Assert.True(await a.PutValueAsync(pkKey, keyA.PublicKeyProtobuf, cancellationToken: TestHosts.Token()).Within() >= 1);
            var got = await js.CallAsync(new { op = "get", key = Convert.ToHexString(pkKey) });
            Assert.Equal(Convert.ToHexString(keyA.PublicKeyProtobuf), got.GetProperty("value").GetString(), ignoreCase: true);

            // js PUT custom namespace → C# GET
            var meshKey = "/mesh/from-js"u8.ToArray();
            await js.CallAsync(new { op = "put", key = Convert.ToHexString(meshKey), value = "68656c6c6f" });
            Assert.Equal("hello"u8.ToArray(), (await b.GetValueAsync(meshKey, TestHosts.Token()).Within()).Value);

            // providers both ways (the key of a CID is its multihash)
            var cidA = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
            var mhA = CidMultihash(cidA);
            Assert.True(await a.ProvideAsync(mhA, TestHosts.Token()).Within() >= 1);
            var provs = await js.CallAsync(new { op = "findProviders", cid = cidA });
            Assert.Contains(hostA.PeerId.ToString(), provs.GetProperty("providers").EnumerateArray().Select(x => x.GetString()));
            var cidJs = "bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su";
            await js.CallAsync(new { op = "provide", cid = cidJs });
            var fromJs = await b.FindProvidersAsync(CidMultihash(cidJs), 5, TestHosts.Token()).Within();
            Assert.Contains(js.PeerId, fromJs.Providers.Select(p => p.Id));

            // js sent requests to the C# servers (ADD_PROVIDER, PUT_VALUE, FIND_NODE...), and none was refused
            Assert.True(a.Metrics.RequestsHandled + b.Metrics.RequestsHandled > 0);
            Assert.Equal(0, a.Metrics.InvalidMessages + b.Metrics.InvalidMessages + a.Metrics.InvalidRecords + b.Metrics.InvalidRecords);
            output.WriteLine($"C# handled {a.Metrics.RequestsHandled + b.Metrics.RequestsHandled} requests");
        }
        finally
        {
            await a.DisposeAsync(); await hostA.DisposeAsync(); keyA.Dispose();
            await b.DisposeAsync(); await hostB.DisposeAsync(); keyB.Dispose();
        }
    }

    private static byte[] CidMultihash(string cid) => InferenceMesh.P2P.Encoding.Cid.Multihash(cid);
}
