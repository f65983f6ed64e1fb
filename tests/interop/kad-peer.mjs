// js-libp2p kad-dht peer (server mode) for KadInteropTests, run from tests/interop after
// `npm ci --prefix tests/interop` (libp2p 3.x and @libp2p/kad-dht 16.x).
// Prints {"event":"ready",...}; then reads one JSON command per stdin line and answers one JSON line each.
import { createLibp2p, tcp, noise, yamux, identify, ping, multiaddr } from './libp2p-modules.mjs'
const { kadDHT, passthroughMapper } = await import('@libp2p/kad-dht')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { CID } = await import('multiformats/cid')
const readline = await import('node:readline')

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const hex = (u8) => Buffer.from(u8).toString('hex')
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'))

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: '/ipfs/kad/1.0.0',
      clientMode: false,
      peerInfoMapper: passthroughMapper,
      validators: { mesh: async () => {} },
      selectors: { mesh: () => 0 }
    })
  }
})
await node.start()
out({ event: 'ready', peerId: node.peerId.toString(), addrs: node.getMultiaddrs().map(a => a.toString()) })

const dht = node.services.dht
const rl = readline.createInterface({ input: process.stdin })
for await (const line of rl) {
  let cmd
  try { cmd = JSON.parse(line) } catch { continue }
  try {
    switch (cmd.op) {
      case 'dial': {
        await node.dial(multiaddr(cmd.addr))
        // give identify and the DHT topology a moment to add the peer
        await new Promise(r => setTimeout(r, 500))
        out({ ok: true, rt: dht.routingTable.size })
        break
      }
      case 'findPeer': {
        const info = await node.peerRouting.findPeer(peerIdFromString(cmd.peerId), { signal: AbortSignal.timeout(15000) })
        out({ ok: true, addrs: info.multiaddrs.map(a => a.toString()) })
        break
      }
      case 'closest': {
        const peers = []
        for await (const p of node.peerRouting.getClosestPeers(unhex(cmd.key), { signal: AbortSignal.timeout(15000) })) peers.push(p.id.toString())
        out({ ok: true, peers })
        break
      }
      case 'put': {
        await node.contentRouting.put(unhex(cmd.key), unhex(cmd.value), { signal: AbortSignal.timeout(15000) })
        out({ ok: true })
        break
      }
      case 'get': {
        const v = await node.contentRouting.get(unhex(cmd.key), { signal: AbortSignal.timeout(15000) })
        out({ ok: true, value: hex(v) })
        break
      }
      case 'provide': {
        await node.contentRouting.provide(CID.parse(cmd.cid), { signal: AbortSignal.timeout(15000) })
        out({ ok: true })
        break
      }
      case 'findProviders': {
        const found = []
        for await (const p of node.contentRouting.findProviders(CID.parse(cmd.cid), { signal: AbortSignal.timeout(15000) })) {
          found.push(p.id.toString())
          break
        }
        out({ ok: true, providers: found })
        break
      }
      case 'rt': {
        out({ ok: true, rt: dht.routingTable.size })
        break
      }
      default:
        out({ ok: false, error: `unknown op ${cmd.op}` })
    }
  } catch (e) {
    out({ ok: false, error: String(e?.stack ?? e) })
  }
}
await node.stop()
