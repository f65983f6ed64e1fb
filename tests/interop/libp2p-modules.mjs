// Shared by the interop peers. js-libp2p 3.x needs Promise.withResolvers (Node 22): polyfill it on Node 20
// before any libp2p module loads (static imports of this file run before the importer's own code).
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

export const { createLibp2p } = await import('libp2p')
export const { tcp } = await import('@libp2p/tcp')
export const { noise } = await import('@chainsafe/libp2p-noise')
export const { yamux } = await import('@chainsafe/libp2p-yamux')
export const { identify, identifyPush } = await import('@libp2p/identify')
export const { ping } = await import('@libp2p/ping')
export const { multiaddr } = await import('@multiformats/multiaddr')
