using ILGPU;
using ILGPU.Runtime;
using InferenceMesh.Core;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// The KV caches of one stage's sessions in accelerator memory. Each session has one key and one value buffer laid
/// out <c>[layer, kvHead, capacity, headSize]</c>; capacity starts at what the first step needs (rounded up) and
/// doubles as the session grows, up to <see cref="MaxSequence"/>. At most <see cref="MaxSessions"/> sessions live
/// at once, so the cache never exceeds MaxSessions × MaxSequence positions; past either bound a step is refused with
/// a <see cref="MeshException"/> that says which. Not thread-safe: the executor serializes access.
/// </summary>
internal sealed class IlgpuKvCache : IDisposable
{
    private const int Granule = 64;
    private readonly Accelerator _accelerator;
    private readonly Dictionary<string, SessionCache> _sessions = new(StringComparer.Ordinal);

    public IlgpuKvCache(Accelerator accelerator, int layers, int kvHeads, int headSize, int maxSessions, int maxSequence)
    {
        _accelerator = accelerator;
        Layers = layers;
        KvHeads = kvHeads;
        HeadSize = headSize;
        MaxSessions = maxSessions;
        MaxSequence = maxSequence;
    }

    public int Layers { get; }
    public int KvHeads { get; }
    public int HeadSize { get; }
    public int MaxSessions { get; }
    public int MaxSequence { get; }
    public int SessionCount => _sessions.Count;

    /// <summary>Bytes of accelerator memory the caches hold now.</summary>
    public long BytesInUse => _sessions.Values.Sum(s => 2L * s.Keys.Length * sizeof(float));

    /// <summary>Bytes per cached position across this stage's layers (keys and values).</summary>
    public long BytesPerPosition => 2L * Layers * KvHeads * HeadSize * sizeof(float);

    public int Length(string sessionId) => _sessions.TryGetValue(sessionId, out var s) ? s.Length : 0;

    /// <summary>The session's cache with room for <paramref name="newLength"/> positions, creating or growing it.</summary>
    public SessionCache Reserve(string sessionId, int newLength, string stageName)
    {
        if (newLength > MaxSequence)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"session {sessionId} would reach {newLength} positions; the limit is {MaxSequence}");
        if (!_sessions.TryGetValue(sessionId, out var session))
        {
            if (_sessions.Count >= MaxSessions)
                throw new MeshException(MeshErrorCode.LimitExceeded,
                    $"the ILGPU KV cache of stage {stageName} is full: it holds {MaxSessions} sessions (the limit); close one or raise MaxSessions");
            session = new SessionCache();
            _sessions[sessionId] = session;
        }
        if (newLength > session.Capacity)
        {
            var capacity = Math.Min(MaxSequence, Math.Max(RoundUp(newLength), 2 * session.Capacity));
            Grow(session, capacity, sessionId, stageName);
        }
        return session;
    }

    public void Close(string sessionId)
    {
        if (_sessions.Remove(sessionId, out var session)) session.Dispose();
    }

    public void Dispose()
    {
        foreach (var session in _sessions.Values) session.Dispose();
        _sessions.Clear();
    }

    private void Grow(SessionCache session, int capacity, string sessionId, string stageName)
    {
        var size = (long)Layers * KvHeads * capacity * HeadSize;
        MemoryBuffer1D<float, Stride1D.Dense> keys, values;
        try
        {
            keys = _accelerator.Allocate1D<float>(size);
        }
        catch (Exception e) when (e is AcceleratorException or OutOfMemoryException or InvalidOperationException)
        {
            throw OutOfMemory(e);
        }
        try
        {
            values = _accelerator.Allocate1D<float>(size);
        }
        catch (Exception e) when (e is AcceleratorException or OutOfMemoryException or InvalidOperationException)
        {
            keys.Dispose();
            throw OutOfMemory(e);
        }
        if (session.Length > 0)
        {
            // Re-lay each (layer, head) run of positions at the new capacity.
            var run = (long)session.Length * HeadSize;
            for (var lh = 0; lh < Layers * KvHeads; lh++)
            {
                session.Keys.View.SubView((long)lh * session.Capacity * HeadSize, run).CopyTo(keys.View.SubView((long)lh * capacity * HeadSize, run));
                session.Values.View.SubView((long)lh * session.Capacity * HeadSize, run).CopyTo(values.View.SubView((long)lh * capacity * HeadSize, run));
            }
        }
        session.Replace(keys, values, capacity);

        MeshException OutOfMemory(Exception e) => new(MeshErrorCode.LimitExceeded,
            $"the accelerator has no memory left for session {sessionId}'s KV cache of stage {stageName} ({capacity} positions, {2 * size * sizeof(float)} bytes): {e.Message}", e);
    }

    private static int RoundUp(int length) => (length + Granule - 1) / Granule * Granule;

    /// <summary>One session's key and value buffers and how many positions they hold.</summary>
    internal sealed class SessionCache : IDisposable
    {
        private MemoryBuffer1D<float, Stride1D.Dense>? _keys;
        private MemoryBuffer1D<float, Stride1D.Dense>? _values;

        public MemoryBuffer1D<float, Stride1D.Dense> Keys => _keys!;
        public MemoryBuffer1D<float, Stride1D.Dense> Values => _values!;
        public int Capacity { get; private set; }
        public int Length { get; set; }

        /// <summary>One layer's <c>[kvHeads, capacity, headSize]</c> slice of the keys.</summary>
        public ArrayView<float> LayerKeys(int layer, int layerSize) => Keys.View.SubView((long)layer * layerSize, layerSize);

        public ArrayView<float> LayerValues(int layer, int layerSize) => Values.View.SubView((long)layer * layerSize, layerSize);

        public void Replace(MemoryBuffer1D<float, Stride1D.Dense> newKeys, MemoryBuffer1D<float, Stride1D.Dense> newValues, int capacity)
        {
            _keys?.Dispose();
            _values?.Dispose();
            _keys = newKeys;
            _values = newValues;
            Capacity = capacity;
        }

        public void Dispose()
        {
            _keys?.Dispose();
            _values?.Dispose();
            _keys = _values = null;
        }
    }
}
