using ILGPU;
using ILGPU.Runtime;
using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// Runs a block-range stage with the ILGPU kernels of <see cref="LlamaKernels"/>: the stage's ONNX graph is recognised
/// block by block (<see cref="LlamaGraphRecognizer"/>), its weights are copied once to the accelerator, and each session's
/// KV cache stays in accelerator memory between steps. A graph it does not recognise is refused at construction with
/// <see cref="MeshErrorCode.InvalidOnnx"/>, so the caller can run that stage on ONNX Runtime instead.
/// Steps of different sessions are serialized on the device; calls for one session must not overlap.
/// </summary>
public sealed class IlgpuStageExecutor : IStageExecutor
{
    private readonly IlgpuDevice _device;
    private readonly bool _ownsDevice;
    private readonly LlamaKernels _kernels;
    private readonly LlamaStagePlan _plan;
    private readonly IlgpuExecutorOptions _options;
    private readonly DeviceBlock[] _blocks;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _cos;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _sin;
    private readonly IlgpuKvCache _cache;
    private readonly Lock _gate = new();
    private Scratch? _scratch;
    private bool _disposed;

    /// <param name="stage">The stage's descriptor; must be a block-range stage.</param>
    /// <param name="model">The stage's ONNX file.</param>
    /// <param name="device">The device to run on, shared and not disposed by this executor; null opens one per <paramref name="options"/> and owns it.</param>
    /// <param name="externalDataDirectory">The directory external-data locations in <paramref name="model"/> are relative to; null when its weights are inline.</param>
    public IlgpuStageExecutor(StageDescriptor stage, byte[] model, IlgpuExecutorOptions? options = null, IlgpuDevice? device = null, string? externalDataDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(stage);
        ArgumentNullException.ThrowIfNull(model);
        Stage = stage;
        _options = options ?? new IlgpuExecutorOptions();
        if (_options.MaxSessions < 1 || _options.MaxSequence < 1 || _options.MaxChunkRows < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"ILGPU executor limits must be positive: {_options}");
        if (stage.Kind != StageKind.Blocks)
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"the ILGPU executor runs block stages only; {stage.File} is a {stage.Kind} stage (run it on ONNX Runtime)");
        foreach (var context in stage.ContextInputs)
            if (context is not ContextInputs.PositionIds and not ContextInputs.AttentionMask)
                throw new MeshException(MeshErrorCode.InvalidOnnx, $"stage {stage.File} needs context input '{context}', which the ILGPU executor cannot provide");
        var graph = OnnxModelFile.Parse(model, stage.File);
        if (externalDataDirectory is not null) OnnxExternalData.Inline(graph, externalDataDirectory);
        _plan = LlamaGraphRecognizer.Recognize(graph, stage.ActivationInput, stage.ActivationOutput);
        if (stage.Blocks is { } range && range.Count != _plan.Blocks.Count)
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"stage {stage.File} says it holds blocks {range} but its graph has {_plan.Blocks.Count}");

        _ownsDevice = device is null;
        _device = device ?? IlgpuDevices.Open(_options.Backend);
        var loaded = new List<DeviceBlock>(_plan.Blocks.Count);
        try
        {
            lock (_device.Gate)
            {
                var accelerator = _device.Accelerator;
                accelerator.Bind();
                _kernels = LlamaKernels.For(accelerator);
                foreach (var block in _plan.Blocks) loaded.Add(new DeviceBlock(accelerator, block));
                _blocks = loaded.ToArray();
                var (cosTable, sinTable) = RotaryTables(_plan.InverseFrequencies, _options.MaxSequence);
                _cos = accelerator.Allocate1D(cosTable);
                _sin = accelerator.Allocate1D(sinTable);
                _cache = new IlgpuKvCache(accelerator, _blocks.Length, _plan.KvHeads, _plan.HeadSize, _options.MaxSessions, _options.MaxSequence);
            }
        }
        catch (Exception e)
        {
            lock (_device.Gate)
            {
                foreach (var block in loaded) block.Dispose();
                _cos?.Dispose();
                _sin?.Dispose();
            }
            if (_ownsDevice) _device.Dispose();
            if (e is AcceleratorException or OutOfMemoryException)
                throw new MeshException(MeshErrorCode.LimitExceeded, $"the accelerator cannot hold stage {stage.File}'s weights: {e.Message}", e);
            throw;
        }
    }

    public StageDescriptor Stage { get; }

    /// <summary>What the graph was recognised as: dimensions and per-block weights.</summary>
    public LlamaStagePlan Plan => _plan;

    /// <summary>The device the kernels run on.</summary>
    public IlgpuDevice Device => _device;

    /// <summary>Bytes of accelerator memory held by KV caches now.</summary>
    public long CacheBytesInUse
    {
        get { lock (_gate) return _cache.BytesInUse; }
    }

    public int CachedLength(string sessionId)
    {
        lock (_gate) return _disposed ? 0 : _cache.Length(sessionId);
    }

    public void CloseSession(string sessionId)
    {
        lock (_gate)
        {
            if (_disposed) return;
            lock (_device.Gate)
            {
                _device.Accelerator.Bind();
                _cache.Close(sessionId);
            }
        }
    }

    public TensorData Run(string sessionId, TensorData activation, int startPosition)
    {
        ArgumentNullException.ThrowIfNull(activation);
        var dim = _plan.Dim;
        if (activation.Type != DType.Float32 || activation.Shape.Length != 3 || activation.Shape[0] != 1 || activation.Shape[1] < 1 || activation.Shape[2] != dim)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"stage {Stage.File} takes Float32 [1, t, {dim}] activations, got {activation}");
        var steps = (int)activation.Shape[1];
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var cached = _cache.Length(sessionId);
            if (cached != startPosition)
                throw new MeshException(MeshErrorCode.ShapeMismatch, $"session {sessionId} has {cached} cached positions; a step at position {startPosition} does not follow on");
            var result = new float[steps * dim];
            var input = activation.AsFloats();
            lock (_device.Gate)
            {
                var accelerator = _device.Accelerator;
                accelerator.Bind();
                var session = _cache.Reserve(sessionId, startPosition + steps, Stage.File);
                // Long prefills go through in chunks of rows: exact, since a row attends only to earlier positions,
                // and it bounds the scratch (the score matrix grows with rows × positions).
                for (var offset = 0; offset < steps; offset += _options.MaxChunkRows)
                {
                    var rows = Math.Min(_options.MaxChunkRows, steps - offset);
                    var position = startPosition + offset;
                    var s = _scratch = Scratch.Ensure(_scratch, accelerator, _plan, rows, position + rows);
                    ArrayView<float> x = s.X.View.SubView(0, (long)rows * dim);
                    x.CopyFromCPU(input.Slice(offset * dim, rows * dim));
                    var layerSize = _plan.KvHeads * session.Capacity * _plan.HeadSize;
                    for (var l = 0; l < _blocks.Length; l++)
                        RunBlock(_blocks[l], s, x, session.LayerKeys(l, layerSize), session.LayerValues(l, layerSize), rows, position, session.Capacity);
                    accelerator.Synchronize();
                    x.CopyToCPU(result.AsSpan(offset * dim, rows * dim));
                }
                session.Length = startPosition + steps;
            }
            return TensorData.FromFloats([1, steps, dim], result);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            lock (_device.Gate)
            {
                _device.Accelerator.Bind();
                foreach (var block in _blocks) block.Dispose();
                _cos.Dispose();
                _sin.Dispose();
                _cache.Dispose();
                _scratch?.Dispose();
                _scratch = null;
            }
            if (_ownsDevice) _device.Dispose();
        }
    }

    private void RunBlock(DeviceBlock b, Scratch s, ArrayView<float> x, ArrayView<float> keyCache, ArrayView<float> valueCache, int steps, int start, int capacity)
    {
        int dim = _plan.Dim, kvDim = _plan.KvDim, hidden = _plan.HiddenDim, heads = _plan.Heads, kvHeads = _plan.KvHeads, hs = _plan.HeadSize;
        var k = _kernels;
        var g = _options.GroupedKernels;
        k.RmsNorm(x, b.AttentionNorm.View, s.H.View, steps, dim, b.Plan.AttentionEpsilon, grouped: g);
        k.MatMul(s.H.View, b.Wq.View, s.Q.View, steps, dim, dim, grouped: g);
        k.MatMul(s.H.View, b.Wk.View, s.K.View, steps, dim, kvDim, grouped: g);
        k.MatMul(s.H.View, b.Wv.View, s.V.View, steps, dim, kvDim, grouped: g);
        k.Rope(s.Q.View, _cos.View, _sin.View, steps, heads, hs, start);
        k.Rope(s.K.View, _cos.View, _sin.View, steps, kvHeads, hs, start);
        k.AppendKv(s.K.View, s.V.View, keyCache, valueCache, steps, kvHeads, hs, capacity, start);
        k.Attention(s.Q.View, keyCache, valueCache, s.Scores.View, s.Context.View, steps, heads, kvHeads, hs, capacity, start, b.Plan.ScoreDivisor, grouped: g);
        k.MatMul(s.Context.View, b.Wo.View, s.O.View, steps, dim, dim, grouped: g);
        k.Add(x, s.O.View, steps * dim);
        k.RmsNorm(x, b.FfnNorm.View, s.H.View, steps, dim, b.Plan.FfnEpsilon, grouped: g);
        k.MatMul(s.H.View, b.W1.View, s.Gate.View, steps, dim, hidden, grouped: g);
        k.MatMul(s.H.View, b.W3.View, s.Up.View, steps, dim, hidden, grouped: g);
        k.SiluMul(s.Gate.View, s.Up.View, steps * hidden);
        k.MatMul(s.Gate.View, b.W2.View, s.O.View, steps, hidden, dim, grouped: g);
        k.Add(x, s.O.View, steps * dim);
    }

    /// <summary>cos and sin of (position × inverse frequency) for every position below <paramref name="positions"/>, in float as the graph computes them.</summary>
    private static (float[] Cos, float[] Sin) RotaryTables(float[] inverseFrequencies, int positions)
    {
        var half = inverseFrequencies.Length;
        var cosTable = new float[(long)positions * half];
        var sinTable = new float[(long)positions * half];
        for (var p = 0; p < positions; p++)
            for (var j = 0; j < half; j++)
            {
                var angle = (float)p * inverseFrequencies[j];
                cosTable[(long)p * half + j] = MathF.Cos(angle);
                sinTable[(long)p * half + j] = MathF.Sin(angle);
            }
        return (cosTable, sinTable);
    }

    /// <summary>One block's weights in accelerator memory.</summary>
    private sealed class DeviceBlock : IDisposable
    {
        public DeviceBlock(Accelerator a, LlamaBlockPlan plan)
        {
            Plan = plan;
            AttentionNorm = a.Allocate1D(plan.AttentionNorm);
            Wq = a.Allocate1D(plan.Wq);
            Wk = a.Allocate1D(plan.Wk);
            Wv = a.Allocate1D(plan.Wv);
            Wo = a.Allocate1D(plan.Wo);
            FfnNorm = a.Allocate1D(plan.FfnNorm);
            W1 = a.Allocate1D(plan.W1);
            W2 = a.Allocate1D(plan.W2);
            W3 = a.Allocate1D(plan.W3);
        }

        public LlamaBlockPlan Plan { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> AttentionNorm { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Wq { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Wk { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Wv { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Wo { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> FfnNorm { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> W1 { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> W2 { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> W3 { get; }

        public void Dispose()
        {
            AttentionNorm.Dispose(); Wq.Dispose(); Wk.Dispose(); Wv.Dispose(); Wo.Dispose();
            FfnNorm.Dispose(); W1.Dispose(); W2.Dispose(); W3.Dispose();
        }
    }

    /// <summary>Per-step working buffers, grown (never shrunk) to the largest step and context seen.</summary>
    private sealed class Scratch : IDisposable
    {
        private Scratch(Accelerator a, LlamaStagePlan plan, int steps, int total)
        {
            Steps = steps;
            Total = total;
            X = a.Allocate1D<float>((long)steps * plan.Dim);
            H = a.Allocate1D<float>((long)steps * plan.Dim);
            Q = a.Allocate1D<float>((long)steps * plan.Dim);
            K = a.Allocate1D<float>((long)steps * plan.KvDim);
            V = a.Allocate1D<float>((long)steps * plan.KvDim);
            Context = a.Allocate1D<float>((long)steps * plan.Dim);
            O = a.Allocate1D<float>((long)steps * plan.Dim);
            Gate = a.Allocate1D<float>((long)steps * plan.HiddenDim);
            Up = a.Allocate1D<float>((long)steps * plan.HiddenDim);
            Scores = a.Allocate1D<float>((long)steps * plan.Heads * total);
        }

        public int Steps { get; }
        public int Total { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> X { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> H { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Q { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> K { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> V { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Context { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> O { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Gate { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Up { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> Scores { get; }

        /// <summary>Returns <paramref name="current"/> if it fits a step of <paramref name="steps"/> rows over <paramref name="total"/> positions, else a larger one.</summary>
        public static Scratch Ensure(Scratch? current, Accelerator a, LlamaStagePlan plan, int steps, int total)
        {
            if (current is not null && current.Steps >= steps && (long)current.Steps * current.Total >= (long)steps * total)
                return current;
            var newSteps = Math.Max(steps, current?.Steps ?? 0);
            var newTotal = Math.Max(total, current is null ? 256 : 2 * current.Total);
            current?.Dispose();
            return new Scratch(a, plan, newSteps, newTotal);
        }

        public void Dispose()
        {
            X.Dispose(); H.Dispose(); Q.Dispose(); K.Dispose(); V.Dispose();
            Context.Dispose(); O.Dispose(); Gate.Dispose(); Up.Dispose(); Scores.Dispose();
        }
    }
}
