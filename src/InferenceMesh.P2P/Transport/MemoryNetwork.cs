using System.Collections.Concurrent;

namespace InferenceMesh.P2P.Transport;

/// <summary>
/// An in-process network for <see cref="MemoryTransport"/>: listeners are found by their
/// <c>/memory/&lt;id&gt;</c> address. Share one instance between the hosts that should reach each other.
/// </summary>
public sealed class MemoryNetwork
{
    private readonly ConcurrentDictionary<ulong, MemoryTransport.Listener> _listeners = new();
    private long _nextId;

    internal MemoryTransport.Listener Bind(ulong id)
    {
        if (id == 0) id = (ulong)Interlocked.Increment(ref _nextId) + 100_000;
        var l = new MemoryTransport.Listener(this, id);
        if (!_listeners.TryAdd(id, l))
            throw new P2PException(P2PErrorCode.NoTransport, $"/memory/{id} is already bound");
        return l;
    }

    internal void Unbind(ulong id) => _listeners.TryRemove(id, out _);

    internal MemoryTransport.Listener? Find(ulong id) => _listeners.GetValueOrDefault(id);

    internal ulong NextDialerId() => (ulong)Interlocked.Increment(ref _nextId) + 100_000;
}
