// js-libp2p peer driven by InferenceMesh.P2P.Tests (interop). One JSON object per stdout line.
// Usage: node peer.mjs '<json config>'
//   {"mode":"listen","early":true}                         listen on 127.0.0.1, serve the bulk protocol;
//                                                          stdin line "handle <protocol>" adds a handler (identify-push)
//   {"mode":"dial","target":"/ip4/../p2p/..","early":true,"streams":64,"size":4194304}
//   {"mode":"dial","target":"..","handshakes":50,"size":268435456}   benchmark: handshake median, one-stream MB/s
//                                                          with the digest checked, then with a discard sink;
//                                                          with "rounds":true it then waits for stdin lines "discard",
//                                                          each one timed discard run (interleaved with the C# runs)
// The process stays up until stdin closes (listen mode) or the dial run ends (dial mode).

import { createLibp2p, tcp, noise, yamux, identify, identifyPush, ping, multiaddr } from './libp2p-modules.mjs'
const { createHash } = await import('node:crypto')

const BULK = '/inferencemesh/test/bulk/1.0.0'
const DISCARD = '/inferencemesh/bench/discard/1.0.0'
const config = JSON.parse(process.argv[2] ?? '{}')
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const node = await createLibp2p({
  addresses: { listen: config.mode === 'listen' ? ['/ip4/127.0.0.1/tcp/0'] : [] },
  transports: [tcp()],
  // early === false: send an empty muxer list in the Noise payload, so the muxer is negotiated over multistream
  connectionEncrypters: [config.early === false ? noise({ extensions: { streamMuxers: [] } }) : noise()],
  streamMuxers: [yamux()],
  connectionManager: { inboundConnectionThreshold: 1000, maxIncomingPendingConnections: 100 },
  services: { identify: identify(), identifyPush: identifyPush(), ping: ping() }
})

// Bulk protocol: the opener sends N bytes then closes its write side; the other side answers sha256(bytes).
async function serveBulk (stream) {
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk.subarray ? chunk.subarray() : chunk)
  stream.send(hash.digest())
  await stream.close()
}
await node.handle(BULK, (stream) => serveBulk(stream).catch(e => process.stderr.write(`bulk handler: ${e}\n`)),
  { maxInboundStreams: 256, maxOutboundStreams: 256 })

// Discard protocol: the other side counts the bytes and answers the count as a little-endian int64.
async function serveDiscard (stream) {
  let total = 0
  for await (const chunk of stream) total += chunk.byteLength
  const reply = Buffer.alloc(8)
  reply.writeBigInt64LE(BigInt(total))
  stream.send(reply)
  await stream.close()
}
await node.handle(DISCARD, (stream) => serveDiscard(stream).catch(e => process.stderr.write(`discard handler: ${e}\n`)))

async function sendDiscard (conn, data) {
  const reply = await sendAndReadReply(conn, DISCARD, data)
  return Number(reply.readBigInt64LE(0)) === data.length
}

// Untimed warm-up, then the median of three timed runs (the C# rows are measured the same way).
async function medianOf3 (run) {
  if (!(await run())) return { ok: false, ms: 0 }
  const runs = []
  let ok = true
  for (let i = 0; i < 3; i++) {
    const t = performance.now()
    ok = (await run()) && ok
    runs.push(performance.now() - t)
  }
  runs.sort((a, b) => a - b)
  return { ok, ms: runs[1] }
}

// One timed discard run per stdin line "discard", until stdin closes: lets the C# side put its runs between them.
async function serveRounds (conn, data) {
  const { createInterface } = await import('node:readline')
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() !== 'discard') continue
    const t = performance.now()
    const ok = await sendDiscard(conn, data)
    out({ event: 'discard-round', ok, ms: performance.now() - t, bytes: data.length })
  }
}

const identified = Promise.withResolvers()
node.addEventListener('peer:identify', (evt) => {
  const d = evt.detail
  identified.resolve(d)
  out({
    event: 'identify',
    peerId: d.peerId.toString(),
    protocols: d.protocols,
    listenAddrs: d.listenAddrs.map(a => a.toString()),
    agentVersion: d.agentVersion,
    protocolVersion: d.protocolVersion,
    observedAddr: d.observedAddr?.toString()
  })
})

function pattern (size, seed) {
  const b = Buffer.allocUnsafe(size)
  let x = (seed * 2654435761) >>> 0
  for (let i = 0; i < size; i += 4) { x = (x * 1664525 + 1013904223) >>> 0; b.writeUInt32LE(x, i) }
  return b
}

async function sendBulk (conn, size, seed) {
  const data = pattern(size, seed)
  return sendData(conn, data, createHash('sha256').update(data).digest('hex'))
}

// Sends prepared bytes and checks the digest the other side answers: the benchmark times only this.
async function sendData (conn, data, expected) {
  const reply = await sendAndReadReply(conn, BULK, data)
  return reply.toString('hex') === expected
}

// Opens a stream for the protocol, sends the bytes, half-closes, and returns everything the other side answers.
async function sendAndReadReply (conn, protocol, data) {
  const stream = await conn.newStream(protocol, { maxOutboundStreams: 256 })
  for (let off = 0; off < data.length; off += 65536) {
    if (!stream.send(data.subarray(off, Math.min(data.length, off + 65536)))) await stream.onDrain()
  }
  await stream.close()
  const parts = []
  for await (const chunk of stream) parts.push(Buffer.from(chunk.subarray ? chunk.subarray() : chunk))
  return Buffer.concat(parts)
}

if (config.mode === 'listen') {
  out({ event: 'ready', peerId: node.peerId.toString(), listen: node.getMultiaddrs().map(a => a.toString()) })
  // stdin commands, one per line: "handle <protocol>" registers a no-op handler (so identify-push announces it)
  const { createInterface } = await import('node:readline')
  const rl = createInterface({ input: process.stdin })
  rl.on('line', async (line) => {
    const [cmd, arg] = line.trim().split(/\s+/)
    if (cmd === 'handle') {
      await node.handle(arg, (stream) => stream.close())
      out({ event: 'handled', protocol: arg })
    }
  })
  rl.on('close', async () => { await node.stop(); process.exit(0) })
} else {
  try {
    const target = multiaddr(config.target)
    let t0 = performance.now()
    const conn = await node.dial(target)
    out({ event: 'connected', remotePeer: conn.remotePeer.toString(), muxer: conn.multiplexer, ms: performance.now() - t0 })
    if (config.handshakes > 0) {
      // Benchmark: fresh connections, time from dial start to the first negotiated stream.
      await conn.close()
      const times = []
      for (let i = 0; i < config.handshakes; i++) {
        const t = performance.now()
        const c = await node.dial(target)
        const s = await c.newStream(BULK, { maxOutboundStreams: 256 })
        times.push(performance.now() - t)
        s.abort(new Error('done'))
        await c.close()
      }
      times.sort((a, b) => a - b)
      out({ event: 'handshakes', medianMs: times[times.length >> 1], minMs: times[0] })
      const c = await node.dial(target)
      const data = pattern(config.size, 1)
      const expected = createHash('sha256').update(data).digest('hex')
      const hashed = await medianOf3(() => sendData(c, data, expected))
      out({ event: 'throughput', ok: hashed.ok, ms: hashed.ms, bytes: config.size })
      const discarded = await medianOf3(() => sendDiscard(c, data))
      out({ event: 'discard', ok: discarded.ok, ms: discarded.ms, bytes: config.size })
      if (config.rounds) await serveRounds(c, data)
      await node.stop()
      process.exit(0)
    }
    // js-libp2p runs Identify on every new connection by itself; wait for it (printed as an 'identify' event)
    await Promise.race([identified.promise, new Promise((_, rej) => setTimeout(() => rej(new Error('identify timed out')), 10000))])
    const rtt = await node.services.ping.ping(target)
    out({ event: 'ping', rtt })
    const streams = config.streams ?? 64
    const size = config.size ?? 4 * 1024 * 1024
    t0 = performance.now()
    const results = await Promise.all(Array.from({ length: streams }, (_, i) => sendBulk(conn, size, i + 1)))
    const ms = performance.now() - t0
    out({ event: 'bulk', ok: results.filter(x => x).length, failed: results.filter(x => !x).length, ms, bytes: streams * size })
    await node.stop()
    process.exit(0)
  } catch (e) {
    out({ event: 'error', message: String(e?.stack ?? e) })
    await node.stop()
    process.exit(1)
  }
}
