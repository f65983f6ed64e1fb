using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// The cost of one stage boundary in one process: what splitting adds per token is one more ONNX Runtime
/// run with its activation copied in and out. Measured on a stage whose graph is a single Identity.
/// </summary>
[MemoryDiagnoser]
public class StageBoundaryBenchmarks
{
    private OrtStageExecutor _stage = null!;
    private TensorData _activation = null!;

    [Params(64, 1024, 4096)]
    public int Width { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var graph = new OnnxGraphBuilder("boundary");
        graph.Input("x", DType.Float32, "1", "t", Width.ToString());
        graph.NodeNamed("Identity", "y", ["x"]);
        graph.Output("y", DType.Float32, "1", "t", Width.ToString());
        var descriptor = new StageDescriptor(StageKind.Blocks, new BlockRange(0, 1), "boundary.onnx", "", "x", "y", [new TensorInfo("x", DType.Float32, ["1", "t", Width.ToString()])], [], [], []);
        _stage = new OrtStageExecutor(descriptor, graph.ToModel(17, "bench").ToByteArray(), new OrtExecutorOptions(IntraOpThreads: 1));
        _activation = TensorData.FromFloats([1, 1, Width], new float[Width]);
    }

    [Benchmark]
    public TensorData OneBoundary() => _stage.Run("s", _activation, 0);

    [GlobalCleanup]
    public void Cleanup() => _stage.Dispose();
}
