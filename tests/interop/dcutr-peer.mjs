// js-libp2p peer for the DCUtR interop test (InferenceMesh.Integration.Tests.HolePunchingInteropTests), run inside a NAT
// test topology with `ip netns exec`. One JSON object per stdout line.
// Usage: node dcutr-peer.mjs '<json config>'
//   {"relay":"<relay addr>","localPort":4001}   reserves a slot on the relay (circuit listen address) and prints
//        {"event":"reserved","peerId":…,"addrs":[…circuit…],"announced":[…]} once it has, then answers pings and hole punches
//   add "target":"<circuit addr>","count":N,"intervalMs":M   then also pings the target N times, M ms apart, printing
//        {"event":"pinged","ms":…,"path":"relayed"|"direct","remoteAddr":…} per ping (the connection js-libp2p picks for it)
// Every TCP dial leaves from localPort: Node.js cannot listen with SO_REUSEPORT, so this peer does not listen on TCP at all
// and dials from one fixed port instead. Behind a port-preserving (endpoint-independent) NAT the address the relay
// observes is then the address the hole punch comes from, which is what a peer must announce for DCUtR to work.
// js-libp2p ignores observed TCP addresses, and announces only addresses something verified (AutoNAT, which cannot
// verify an address behind a NAT); this script verifies the one the relay observed itself, standing in for both.
// The process stays up until SIGTERM (it runs under `ip netns exec`, where the test owns no stdin pipe).
import { createLibp2p, tcp, noise, yamux, identify, ping, multiaddr } from './libp2p-modules.mjs'
const { circuitRelayTransport } = await import('@libp2p/circuit-relay-v2')
const { dcutr } = await import('@libp2p/dcutr')

const config = JSON.parse(process.argv[2] ?? '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))
const isCircuit = (ma) => ma.toString().includes('/p2p-circuit')

// One /ipfs/ping/1.0.0 round trip on this connection, in ms.
async function pingOver (conn) {
  const stream = await conn.newStream('/ipfs/ping/1.0.0', { runOnLimitedConnection: true })
  const data = crypto.getRandomValues(new Uint8Array(32))
  const received = []
  let length = 0
  const start = Date.now()
  const pong = new Promise((resolve, reject) => {
    stream.addEventListener('message', (evt) => {
      received.push(evt.data.subarray())
      length += evt.data.byteLength
      if (length >= 32) resolve(Date.now() - start)
    })
    stream.addEventListener('close', () => { if (length < 32) reject(new Error('ping stream closed early')) })
  })
  stream.send(data)
  const ms = await pong
  const echoed = Buffer.concat(received).subarray(0, 32)
  if (!echoed.equals(Buffer.from(data))) throw new Error('wrong ping answer')
  await stream.close()
  return ms
}

try {
  const node = await createLibp2p({
    addresses: { listen: [`${config.relay}/p2p-circuit`] },
    transports: [tcp({ dialOpts: { localPort: config.localPort } }), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping({ runOnLimitedConnection: true }), dcutr: dcutr() },
    start: false
  })
  // js-libp2p's identify drops every observed TCP address (its dials do not leave from its listen port, js-libp2p#2620):
  // take the one the relay reports and verify it here.
  const observed = Promise.withResolvers()
  node.addEventListener('peer:identify', (evt) => {
    const { observedAddr, connection } = evt.detail
    if (observedAddr != null && !isCircuit(connection.remoteAddr)) observed.resolve(observedAddr)
  })
  await node.start()
  const seen = await observed.promise
  node.components.addressManager.confirmObservedAddr(seen, { type: 'observed' })
  while (!node.getMultiaddrs().some(isCircuit)) await sleep(25)
  out({
    event: 'reserved',
    peerId: node.peerId.toString(),
    addrs: node.getMultiaddrs().filter(isCircuit).map(a => a.toString()),
    announced: node.getMultiaddrs().filter(a => !isCircuit(a)).map(a => a.toString())
  })
  process.on('SIGTERM', async () => { await node.stop(); process.exit(0) })

  if (config.target != null) {
    const target = multiaddr(config.target)
    const peer = target.getComponents().findLast(c => c.name === 'p2p').value
    await node.dial(target)
    for (let i = 0; i < (config.count ?? 10); i++) {
      if (i > 0) await sleep(config.intervalMs ?? 250)
      // The connection a new stream to the peer goes over: js-libp2p's own choice (open, direct and unlimited first).
      const conns = node.getConnections().filter(c => c.remotePeer.toString() === peer && c.status === 'open')
      const conn = conns.find(c => !isCircuit(c.remoteAddr) && c.limits == null) ?? conns.find(c => c.limits == null) ?? conns[0]
      const ms = await pingOver(conn)
      out({ event: 'pinged', ms, path: isCircuit(conn.remoteAddr) ? 'relayed' : 'direct', remoteAddr: conn.remoteAddr.toString() })
    }
    out({ event: 'done', connections: node.getConnections().map(c => ({ remoteAddr: c.remoteAddr.toString(), limited: c.limits != null })) })
  }
} catch (e) {
  out({ event: 'error', message: String(e?.stack ?? e) })
  process.exit(1)
}
