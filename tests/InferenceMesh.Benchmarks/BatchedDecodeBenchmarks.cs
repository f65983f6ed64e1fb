using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Split;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// One decode step of <see cref="Rows"/> sessions through one dim-1024 block (the synthetic model of docs/BENCHMARKS.md,
/// one ONNX Runtime thread), as a node's batch runs it: what a step costs per session as the batch grows, and what
/// padded pasts cost against sessions that all stand at one position. <see cref="Spread"/> puts the sessions at
/// positions 7 apart (64 + 7i); a graph without padded pasts must then run each alone.
/// </summary>
[MemoryDiagnoser]
public class BatchedDecodeBenchmarks
{
    private const int Width = 1024;
    private const int InvocationsPerIteration = 16;
    private readonly Random _random = new(1);
    private OrtStageExecutor _executor = null!;
    private List<string> _sessions = [];
    private int[] _positions = [];
    private TensorData _step = null!;

    [Params(1, 4, 16)]
    public int Rows { get; set; }

    /// <summary>Whether the graph declares padded pasts (<see cref="LlamaOnnxBuilder.PastPaddingKey"/>), as graphs built now do.</summary>
    [Params(true, false)]
    public bool PaddedPasts { get; set; }

    /// <summary>Whether the sessions stand at different positions (else all at 100).</summary>
    [Params(false, true)]
    public bool Spread { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var config = new ModelConfig(Width, 2816, 2, 16, 16, 512, 512, 1e-5f, 10000f);
        var model = LlamaOnnxBuilder.Build(LlamaWeights.Synthetic(config, 1), "batched-decode");
        if (!PaddedPasts) model.MetadataProps.Clear();
        var stage = GraphSplitter.Split(model, new GraphAnalysis(model), [new BlockRange(0, 1), new BlockRange(1, 2)])
            .Single(s => s.Descriptor.Blocks == new BlockRange(0, 1) && s.Descriptor.State.Count > 0);
        _executor = new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray(), new OrtExecutorOptions(IntraOpThreads: 1));
        _step = Activation(1);
    }

    /// <summary>Fresh sessions prefilled to their positions, so every iteration decodes from the same lengths.</summary>
    [IterationSetup]
    public void Prefill()
    {
        foreach (var session in _sessions) _executor.CloseSession(session);
        _sessions = Enumerable.Range(0, Rows).Select(i => $"s{i}").ToList();
        _positions = Enumerable.Range(0, Rows).Select(i => Spread ? 64 + 7 * i : 100).ToArray();
        for (var i = 0; i < Rows; i++)
        {
            using var prompt = Activation(_positions[i]);
            _executor.Run(_sessions[i], prompt, 0).Dispose();
        }
    }

    [Benchmark(OperationsPerInvoke = 1)]
    [InvocationCount(InvocationsPerIteration, 1)]
    public void DecodeStepOfEverySession()
    {
        var results = _executor.RunBatch(_sessions.Select((s, i) => new StageBatchItem(s, _step, _positions[i]++)).ToList());
        foreach (var result in results) (result.Output ?? throw result.Error!).Dispose();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _executor.Dispose();
        _step.Dispose();
    }

    private TensorData Activation(int positions) =>
        TensorData.FromFloats([1, positions, Width], Enumerable.Range(0, positions * Width).Select(_ => (float)_random.NextDouble() - 0.5f).ToArray());
}
