// js-libp2p peer for the Circuit Relay v2 interop tests (InferenceMesh.P2P.Tests.RelayInteropTests). One JSON object per stdout line.
// Usage: node relay-peer.mjs '<json config>'
//   {"mode":"relay"}                       a relay server listening on 127.0.0.1: prints {"event":"ready","addrs":[…]}
//   {"mode":"private","relay":"<addr>"}    reserves a slot on the relay and listens through it: prints
//                                          {"event":"reserved","addrs":[…circuit addresses…]} and answers pings
//   {"mode":"dial","target":"<circuit>"}   dials a circuit address and pings through it: {"event":"pinged","ms":…,"limited":…}
// The process stays up until stdin closes (relay and private modes) or the ping is done (dial mode).
import { createLibp2p, tcp, noise, yamux, identify, ping, multiaddr } from './libp2p-modules.mjs'
const { circuitRelayServer, circuitRelayTransport } = await import('@libp2p/circuit-relay-v2')

const config = JSON.parse(process.argv[2] ?? '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

try {
  const listen = config.mode === 'relay' ? ['/ip4/127.0.0.1/tcp/0'] : config.mode === 'private' ? [`${config.relay}/p2p-circuit`] : []
  const services = { identify: identify(), ping: ping({ runOnLimitedConnection: true }) }
  if (config.mode === 'relay') services.relay = circuitRelayServer()
  const node = await createLibp2p({
    addresses: { listen },
    transports: [tcp(), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services
  })
  const addrs = () => node.getMultiaddrs().map(a => a.toString())
  if (config.mode === 'relay') {
    out({ event: 'ready', peerId: node.peerId.toString(), addrs: addrs() })
  } else if (config.mode === 'private') {
    while (!addrs().some(a => a.includes('/p2p-circuit'))) await new Promise(resolve => setTimeout(resolve, 50))
    out({ event: 'reserved', peerId: node.peerId.toString(), addrs: addrs().filter(a => a.includes('/p2p-circuit')) })
  } else {
    const target = multiaddr(config.target)
    const conn = await node.dial(target)
    const ms = await node.services.ping.ping(target)
    out({ event: 'pinged', ms, limited: conn.limits != null, remoteAddr: conn.remoteAddr.toString() })
    await node.stop()
    process.exit(0)
  }
  process.stdin.resume()
  process.stdin.on('end', async () => { await node.stop(); process.exit(0) })
} catch (e) {
  out({ event: 'error', message: String(e?.stack ?? e) })
  process.exit(1)
}
