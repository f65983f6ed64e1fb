using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>
/// The hot layers of a Llama block as ILGPU kernels, loaded once per <see cref="Accelerator"/> and cached
/// (<see cref="For"/>). Every kernel is a static method (index first for the implicitly grouped ones); the
/// instance methods launch them on the accelerator's default stream and return without waiting, so a
/// caller enqueues a whole step and synchronizes once.
/// <para>
/// Layouts are row-major and follow the ONNX graph: activations <c>[rows, dim]</c>, weights <c>[in, out]</c>
/// (the MatMul B operand, i.e. Wᵀ), per-head vectors <c>[rows, heads, headSize]</c>, one layer's cache
/// <c>[kvHeads, capacity, headSize]</c>.
/// </para>
/// </summary>
public sealed class LlamaKernels
{
    private static readonly ConditionalWeakTable<Accelerator, LlamaKernels> Cache = new();

    private readonly Accelerator _accelerator;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _matVec;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _matMulTiled;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNorm;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> _rope;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int> _appendKv;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape> _attentionScores;
    private readonly Action<KernelConfig, ArrayView<float>, int, int, int> _softmax;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape> _attentionContext;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _siluMul;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _addInPlace;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _matMulPerElement;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> _rmsNormPerRow;
    private readonly Action<Index1D, ArrayView<float>, int, int, int> _softmaxPerRow;

    private LlamaKernels(Accelerator accelerator)
    {
        _accelerator = accelerator;
        var maxGroup = Math.Max(1, accelerator.MaxNumThreadsPerGroup);
        ReductionGroupSize = LargestPowerOfTwoAtMost(Math.Min(256, maxGroup));
        Tile = Math.Min(16, LargestPowerOfTwoAtMost((int)Math.Sqrt(maxGroup)));
        MatVecColumns = Math.Min(32, Math.Max(1, ReductionGroupSize / 4));
        MatVecSlices = ReductionGroupSize / MatVecColumns;

        _matVec = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(MatVecKernel);
        _matMulTiled = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(MatMulTiledKernel);
        _rmsNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RmsNormKernel);
        _rope = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(RopeKernel);
        _appendKv = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(AppendKvKernel);
        _attentionScores = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionScoresKernel);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, int, int, int>(SoftmaxKernel);
        _attentionContext = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, AttentionShape>(AttentionContextKernel);
        _siluMul = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(SiluMulKernel);
        _addInPlace = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(AddInPlaceKernel);
        _matMulPerElement = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(MatMulPerElementKernel);
        _rmsNormPerRow = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(RmsNormPerRowKernel);
        _softmaxPerRow = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, int, int>(SoftmaxPerRowKernel);
        PreferGrouped = accelerator.AcceleratorType != AcceleratorType.CPU;
    }

    /// <summary>The kernels loaded on <paramref name="accelerator"/>; loaded on first use, then cached for the accelerator's lifetime.</summary>
    public static LlamaKernels For(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        return Cache.GetValue(accelerator, a => new LlamaKernels(a));
    }

    public Accelerator Accelerator => _accelerator;

    /// <summary>Threads per group of the reduction kernels (RMSNorm, softmax).</summary>
    public int ReductionGroupSize { get; }

    /// <summary>Side of the square tile of the shared-memory matrix product (16 on a GPU; smaller where groups are small, as on the CPU accelerator).</summary>
    public int Tile { get; }

    /// <summary>Output columns per group of the matrix-vector kernel.</summary>
    public int MatVecColumns { get; }

    /// <summary>Slices of the reduction dimension per group of the matrix-vector kernel (split-K within a group).</summary>
    public int MatVecSlices { get; }

    /// <summary>Rows at or below which <see cref="MatMul"/> takes the matrix-vector kernel rather than the tiled one.</summary>
    public const int MatVecMaxRows = 4;

    /// <summary>
    /// Whether the dispatching launchers (<see cref="MatMul"/>, <see cref="RmsNorm"/>, <see cref="SoftmaxRows"/>, <see cref="Attention"/>) take
    /// the group kernels (shared memory, barriers) when not told otherwise: true on a GPU. False on ILGPU's CPU accelerator, whose
    /// group barriers cost about a millisecond each; there they take per-element kernels with no barriers. Both variants are tested on every backend.
    /// </summary>
    public bool PreferGrouped { get; }

    // ---------------------------------------------------------------- launchers

    /// <summary>
    /// <c>y[rows, outDim] = x[rows, inDim] · w[inDim, outDim]</c>. Grouped: the matrix-vector kernel for a few rows (decode), the tiled one
    /// otherwise; else one thread per output element. <paramref name="grouped"/> null means <see cref="PreferGrouped"/>.
    /// </summary>
    public void MatMul(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int rows, int inDim, int outDim, bool? grouped = null)
    {
        if (!(grouped ?? PreferGrouped)) MatMulPerElement(x, w, y, rows, inDim, outDim);
        else if (rows <= MatVecMaxRows) MatVec(x, w, y, rows, inDim, outDim);
        else MatMulTiled(x, w, y, rows, inDim, outDim);
    }

    /// <summary>Matrix product with one thread per output element and no shared memory.</summary>
    public void MatMulPerElement(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int rows, int inDim, int outDim)
    {
        if (rows == 0 || outDim == 0) return;
        _matMulPerElement(rows * outDim, x, w, y, inDim, outDim);
    }

    /// <summary>Matrix-vector product for each of <paramref name="rows"/> rows: groups of <see cref="MatVecColumns"/> × <see cref="MatVecSlices"/> threads, coalesced reads of w.</summary>
    public void MatVec(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int rows, int inDim, int outDim)
    {
        if (rows == 0 || outDim == 0) return;
        var groups = (outDim + MatVecColumns - 1) / MatVecColumns;
        var config = new KernelConfig(
            new Index2D(groups, rows),
            new Index2D(MatVecColumns, MatVecSlices),
            SharedMemoryConfig.RequestDynamic<float>(MatVecColumns * MatVecSlices));
        _matVec(config, x, w, y, inDim, outDim, rows);
    }

    /// <summary>Matrix product tiled through shared memory, <see cref="Tile"/> × <see cref="Tile"/> threads per group.</summary>
    public void MatMulTiled(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int rows, int inDim, int outDim)
    {
        if (rows == 0 || outDim == 0) return;
        var config = new KernelConfig(
            new Index2D((outDim + Tile - 1) / Tile, (rows + Tile - 1) / Tile),
            new Index2D(Tile, Tile),
            SharedMemoryConfig.RequestDynamic<float>(2 * Tile * Tile));
        _matMulTiled(config, x, w, y, rows, inDim, outDim);
    }

    /// <summary>
    /// <c>y = x · (1 / sqrt(mean(x²) + eps)) · weight</c> per row of <paramref name="dim"/> elements: one group per row reducing in shared
    /// memory, or one thread per row. <paramref name="grouped"/> null means <see cref="PreferGrouped"/>.
    /// </summary>
    public void RmsNorm(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int rows, int dim, float epsilon, bool? grouped = null)
    {
        if (rows == 0) return;
        if (!(grouped ?? PreferGrouped))
        {
            _rmsNormPerRow(rows, x, weight, y, dim, epsilon);
            return;
        }
        var config = new KernelConfig(
            new Index1D(rows),
            new Index1D(ReductionGroupSize),
            SharedMemoryConfig.RequestDynamic<float>(ReductionGroupSize + 1));
        _rmsNorm(config, x, weight, y, dim, epsilon);
    }

    /// <summary>
    /// Rotates adjacent pairs (2j, 2j+1) of every head of <paramref name="v"/> <c>[rows, heads, headSize]</c> in place; row r is at
    /// position <paramref name="startPosition"/> + r. <paramref name="cos"/> and <paramref name="sin"/> are <c>[positions, headSize/2]</c> tables.
    /// </summary>
    public void Rope(ArrayView<float> v, ArrayView<float> cos, ArrayView<float> sin, int rows, int heads, int headSize, int startPosition)
    {
        var pairs = rows * heads * (headSize / 2);
        if (pairs == 0) return;
        _rope(pairs, v, cos, sin, heads * (headSize / 2), headSize / 2, startPosition);
    }

    /// <summary>
    /// Writes k and v <c>[rows, kvHeads, headSize]</c> into one layer's caches <c>[kvHeads, capacity, headSize]</c> at positions
    /// <paramref name="startPosition"/> … + rows − 1.
    /// </summary>
    public void AppendKv(ArrayView<float> k, ArrayView<float> v, ArrayView<float> keyCache, ArrayView<float> valueCache,
        int rows, int kvHeads, int headSize, int capacity, int startPosition)
    {
        var count = rows * kvHeads * headSize;
        if (count == 0) return;
        _appendKv(count, k, v, keyCache, valueCache, kvHeads, headSize, capacity, startPosition);
    }

    /// <summary>
    /// Causal grouped-query attention of <paramref name="q"/> <c>[rows, heads, headSize]</c> (row r at position
    /// <paramref name="startPosition"/> + r) over one layer's caches, which must already hold positions
    /// 0 … <paramref name="startPosition"/> + rows − 1. Query head h reads KV head h / (heads / kvHeads).
    /// <paramref name="scores"/> is scratch of at least rows × heads × (startPosition + rows) floats.
    /// Writes <paramref name="output"/> <c>[rows, heads, headSize]</c>. Serves prefill (rows &gt; 1) and decode (rows = 1) alike.
    /// Scores are divided by <paramref name="scoreDivisor"/>, √headSize when null.
    /// </summary>
    public void Attention(ArrayView<float> q, ArrayView<float> keyCache, ArrayView<float> valueCache, ArrayView<float> scores, ArrayView<float> output,
        int rows, int heads, int kvHeads, int headSize, int capacity, int startPosition, float? scoreDivisor = null, bool? grouped = null)
    {
        if (rows == 0) return;
        var shape = new AttentionShape(heads, kvHeads, headSize, capacity, startPosition, startPosition + rows, scoreDivisor ?? MathF.Sqrt(headSize));
        _attentionScores(rows * heads * shape.Total, q, keyCache, scores, shape);
        SoftmaxRows(scores, rows * heads, shape.Total, startPosition + 1, heads, grouped);
        _attentionContext(rows * heads * headSize, scores, valueCache, output, shape);
    }

    /// <summary>
    /// Softmax over each of <paramref name="rows"/> rows of stride <paramref name="rowStride"/>, in place. Row r covers its first
    /// <paramref name="baseLength"/> + r / <paramref name="rowsPerStep"/> elements (the causal mask of attention: rowsPerStep = heads);
    /// the rest of the row is set to 0. Pass <paramref name="rowsPerStep"/> = <see cref="int.MaxValue"/> for rows of equal length.
    /// One group per row reducing in shared memory, or one thread per row; <paramref name="grouped"/> null means <see cref="PreferGrouped"/>.
    /// </summary>
    public void SoftmaxRows(ArrayView<float> data, int rows, int rowStride, int baseLength, int rowsPerStep, bool? grouped = null)
    {
        if (rows == 0) return;
        if (!(grouped ?? PreferGrouped))
        {
            _softmaxPerRow(rows, data, rowStride, baseLength, rowsPerStep);
            return;
        }
        var config = new KernelConfig(
            new Index1D(rows),
            new Index1D(ReductionGroupSize),
            SharedMemoryConfig.RequestDynamic<float>(ReductionGroupSize));
        _softmax(config, data, rowStride, baseLength, rowsPerStep);
    }

    /// <summary><c>gate = silu(gate) ⊙ up</c>, elementwise over <paramref name="count"/> elements.</summary>
    public void SiluMul(ArrayView<float> gate, ArrayView<float> up, int count)
    {
        if (count == 0) return;
        _siluMul(count, gate, up);
    }

    /// <summary><c>x += y</c> over <paramref name="count"/> elements (the residual add).</summary>
    public void Add(ArrayView<float> x, ArrayView<float> y, int count)
    {
        if (count == 0) return;
        _addInPlace(count, x, y);
    }

    // ---------------------------------------------------------------- kernels

    /// <summary>Sizes of one attention launch, passed by value to the kernels.</summary>
    public readonly struct AttentionShape
    {
        public AttentionShape(int heads, int kvHeads, int headSize, int capacity, int startPosition, int total, float scale)
        {
            Heads = heads;
            Group = heads / kvHeads;
            HeadSize = headSize;
            Capacity = capacity;
            StartPosition = startPosition;
            Total = total;
            Scale = scale;
        }

        public int Heads { get; }
        public int Group { get; }
        public int HeadSize { get; }
        public int Capacity { get; }
        public int StartPosition { get; }
        public int Total { get; }
        public float Scale { get; }
    }

    /// <summary>
    /// Grid (column groups, rows); group (columns, slices). Each thread sums x·w over a strided slice of the inner dimension for one
    /// output column (adjacent threads read adjacent columns of a row of w: coalesced); the slices meet in shared memory.
    /// </summary>
    public static void MatVecKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int inDim, int outDim, int rows)
    {
        var partial = SharedMemory.GetDynamic<float>();
        var columns = Group.DimX;
        var slices = Group.DimY;
        var column = Grid.IdxX * columns + Group.IdxX;
        var row = Grid.IdxY;
        var sum = 0f;
        if (column < outDim)
        {
            var xBase = (long)row * inDim;
            for (var k = Group.IdxY; k < inDim; k += slices)
                sum += x[xBase + k] * w[(long)k * outDim + column];
        }
        partial[Group.IdxY * columns + Group.IdxX] = sum;
        Group.Barrier();
        if (Group.IdxY == 0 && column < outDim)
        {
            var total = partial[Group.IdxX];
            for (var s = 1; s < slices; s++)
                total += partial[s * columns + Group.IdxX];
            y[(long)row * outDim + column] = total;
        }
    }

    /// <summary>Grid (column tiles, row tiles); group (tile, tile). Classic shared-memory tiling of x and w.</summary>
    public static void MatMulTiledKernel(ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int rows, int inDim, int outDim)
    {
        var shared = SharedMemory.GetDynamic<float>();
        var tile = Group.DimX;
        var tx = Group.IdxX;
        var ty = Group.IdxY;
        var column = Grid.IdxX * tile + tx;
        var row = Grid.IdxY * tile + ty;
        var wOffset = tile * tile;
        var sum = 0f;
        for (var k0 = 0; k0 < inDim; k0 += tile)
        {
            var xk = k0 + tx;
            shared[ty * tile + tx] = row < rows && xk < inDim ? x[(long)row * inDim + xk] : 0f;
            var wk = k0 + ty;
            shared[wOffset + ty * tile + tx] = wk < inDim && column < outDim ? w[(long)wk * outDim + column] : 0f;
            Group.Barrier();
            for (var k = 0; k < tile; k++)
                sum += shared[ty * tile + k] * shared[wOffset + k * tile + tx];
            Group.Barrier();
        }
        if (row < rows && column < outDim)
            y[(long)row * outDim + column] = sum;
    }

    /// <summary>One group per row: sum of squares reduced in shared memory, then every thread scales its elements.</summary>
    public static void RmsNormKernel(ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int dim, float epsilon)
    {
        var shared = SharedMemory.GetDynamic<float>();
        var size = Group.DimX;
        var tid = Group.IdxX;
        var rowBase = (long)Grid.IdxX * dim;
        var sum = 0f;
        for (var i = tid; i < dim; i += size)
        {
            var v = x[rowBase + i];
            sum += v * v;
        }
        shared[tid] = sum;
        Group.Barrier();
        for (var stride = size / 2; stride > 0; stride /= 2)
        {
            if (tid < stride) shared[tid] += shared[tid + stride];
            Group.Barrier();
        }
        if (tid == 0)
            shared[size] = 1f / MathF.Sqrt(shared[0] / dim + epsilon);
        Group.Barrier();
        var inverse = shared[size];
        for (var i = tid; i < dim; i += size)
            y[rowBase + i] = x[rowBase + i] * inverse * weight[i];
    }

    /// <summary>One thread per (row, head, pair): rotates (v[2j], v[2j+1]) by the angle of the row's position.</summary>
    public static void RopeKernel(Index1D index, ArrayView<float> v, ArrayView<float> cos, ArrayView<float> sin, int pairsPerRow, int half, int startPosition)
    {
        int i = index;
        var row = i / pairsPerRow;
        var j = i % half;
        var table = (long)(startPosition + row) * half + j;
        var c = cos[table];
        var s = sin[table];
        var at = 2L * i;
        var re = v[at];
        var im = v[at + 1];
        v[at] = re * c - im * s;
        v[at + 1] = re * s + im * c;
    }

    /// <summary>One thread per element of k (and v): copies it into the caches at its position.</summary>
    public static void AppendKvKernel(Index1D index, ArrayView<float> k, ArrayView<float> v, ArrayView<float> keyCache, ArrayView<float> valueCache,
        int kvHeads, int headSize, int capacity, int startPosition)
    {
        int i = index;
        var rowSize = kvHeads * headSize;
        var row = i / rowSize;
        var rest = i - row * rowSize;
        var head = rest / headSize;
        var d = rest - head * headSize;
        var at = ((long)head * capacity + startPosition + row) * headSize + d;
        keyCache[at] = k[i];
        valueCache[at] = v[i];
    }

    /// <summary>One thread per (row, head, key position): the scaled dot product, for positions the causal mask lets through.</summary>
    public static void AttentionScoresKernel(Index1D index, ArrayView<float> q, ArrayView<float> keyCache, ArrayView<float> scores, AttentionShape shape)
    {
        int i = index;
        var total = shape.Total;
        var position = i % total;
        var rowHead = i / total;
        var head = rowHead % shape.Heads;
        var row = rowHead / shape.Heads;
        if (position > shape.StartPosition + row)
            return;
        var hs = shape.HeadSize;
        var qBase = (long)rowHead * hs;
        var kBase = ((long)(head / shape.Group) * shape.Capacity + position) * hs;
        var dot = 0f;
        for (var d = 0; d < hs; d++)
            dot += q[qBase + d] * keyCache[kBase + d];
        scores[i] = dot / shape.Scale;
    }

    /// <summary>One group per row: max and sum reduced in shared memory; exp(x − max) / sum over the row's valid prefix, 0 after it.</summary>
    public static void SoftmaxKernel(ArrayView<float> data, int rowStride, int baseLength, int rowsPerStep)
    {
        var shared = SharedMemory.GetDynamic<float>();
        var size = Group.DimX;
        var tid = Group.IdxX;
        var row = Grid.IdxX;
        var length = baseLength + row / rowsPerStep;
        if (length > rowStride) length = rowStride;
        var rowBase = (long)row * rowStride;

        var max = float.NegativeInfinity;
        for (var i = tid; i < length; i += size)
            max = MathF.Max(max, data[rowBase + i]);
        shared[tid] = max;
        Group.Barrier();
        for (var stride = size / 2; stride > 0; stride /= 2)
        {
            if (tid < stride) shared[tid] = MathF.Max(shared[tid], shared[tid + stride]);
            Group.Barrier();
        }
        max = shared[0];
        Group.Barrier();

        var sum = 0f;
        for (var i = tid; i < length; i += size)
        {
            var e = KernelMath.Exp(data[rowBase + i] - max);
            data[rowBase + i] = e;
            sum += e;
        }
        shared[tid] = sum;
        Group.Barrier();
        for (var stride = size / 2; stride > 0; stride /= 2)
        {
            if (tid < stride) shared[tid] += shared[tid + stride];
            Group.Barrier();
        }
        sum = shared[0];
        for (var i = tid; i < rowStride; i += size)
            data[rowBase + i] = i < length ? data[rowBase + i] / sum : 0f;
    }

    /// <summary>One thread per (row, head, dim): the probability-weighted sum of the cached values.</summary>
    public static void AttentionContextKernel(Index1D index, ArrayView<float> probabilities, ArrayView<float> valueCache, ArrayView<float> output, AttentionShape shape)
    {
        int i = index;
        var hs = shape.HeadSize;
        var d = i % hs;
        var rowHead = i / hs;
        var head = rowHead % shape.Heads;
        var row = rowHead / shape.Heads;
        var length = shape.StartPosition + row + 1;
        var pBase = (long)rowHead * shape.Total;
        var vBase = (long)(head / shape.Group) * shape.Capacity * hs + d;
        var sum = 0f;
        for (var p = 0; p < length; p++)
            sum += probabilities[pBase + p] * valueCache[vBase + (long)p * hs];
        output[i] = sum;
    }

    /// <summary>gate[i] = (gate[i] · σ(gate[i])) · up[i].</summary>
    public static void SiluMulKernel(Index1D index, ArrayView<float> gate, ArrayView<float> up)
    {
        var g = gate[index];
        gate[index] = g * KernelMath.Sigmoid(g) * up[index];
    }

    /// <summary>One thread per output element: y[r, c] = Σₖ x[r, k] · w[k, c].</summary>
    public static void MatMulPerElementKernel(Index1D index, ArrayView<float> x, ArrayView<float> w, ArrayView<float> y, int inDim, int outDim)
    {
        int i = index;
        var row = i / outDim;
        var column = i - row * outDim;
        var xBase = (long)row * inDim;
        var sum = 0f;
        for (var k = 0; k < inDim; k++)
            sum += x[xBase + k] * w[(long)k * outDim + column];
        y[i] = sum;
    }

    /// <summary>One thread per row of RMSNorm.</summary>
    public static void RmsNormPerRowKernel(Index1D row, ArrayView<float> x, ArrayView<float> weight, ArrayView<float> y, int dim, float epsilon)
    {
        var rowBase = (long)row.X * dim;
        var sum = 0f;
        for (var i = 0; i < dim; i++)
        {
            var v = x[rowBase + i];
            sum += v * v;
        }
        var inverse = 1f / MathF.Sqrt(sum / dim + epsilon);
        for (var i = 0; i < dim; i++)
            y[rowBase + i] = x[rowBase + i] * inverse * weight[i];
    }

    /// <summary>One thread per row of the (causal) softmax; same contract as <see cref="SoftmaxKernel"/>.</summary>
    public static void SoftmaxPerRowKernel(Index1D index, ArrayView<float> data, int rowStride, int baseLength, int rowsPerStep)
    {
        int row = index;
        var length = baseLength + row / rowsPerStep;
        if (length > rowStride) length = rowStride;
        var rowBase = (long)row * rowStride;
        var max = float.NegativeInfinity;
        for (var i = 0; i < length; i++)
            max = MathF.Max(max, data[rowBase + i]);
        var sum = 0f;
        for (var i = 0; i < length; i++)
        {
            var e = KernelMath.Exp(data[rowBase + i] - max);
            data[rowBase + i] = e;
            sum += e;
        }
        for (var i = 0; i < rowStride; i++)
            data[rowBase + i] = i < length ? data[rowBase + i] / sum : 0f;
    }

    /// <summary>x[i] = x[i] + y[i].</summary>
    public static void AddInPlaceKernel(Index1D index, ArrayView<float> x, ArrayView<float> y) => x[index] = x[index] + y[index];

    private static int LargestPowerOfTwoAtMost(int value)
    {
        var result = 1;
        while (result * 2 <= value) result *= 2;
        return result;
    }
}
