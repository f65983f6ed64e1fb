using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// A fused export's layer boundary as cut (two tensors cross: the residual sum and the normalised input) against the
/// same boundary after the skip-norm rewrite (only the sum crosses and the next stage normalises it): the shared
/// ONNX Runtime GenAI builder Llama (fp16) in head, 2 one-block stages and tail, one process, a 6-token prefill and
/// 10 decode steps per operation.
/// </summary>
[MemoryDiagnoser]
public class SkipNormBoundaryBenchmarks
{
    private StagePipeline _pipeline = null!;

    [Params(false, true)]
    public bool UnfuseSkipNorms { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var directory = Path.GetDirectoryName(TestModels.LlamaGenAiFp16)!;
        var model = OnnxModelFile.Load(TestModels.LlamaGenAiFp16);
        var analysis = new GraphAnalysis(model, unfuseSkipNorms: UnfuseSkipNorms);
        var options = new OrtExecutorOptions(IntraOpThreads: 1);
        _pipeline = new StagePipeline(GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, analysis.BlockCount))
            .Select(s => (IStageExecutor)new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray(), options, directory)).ToList());
    }

    [Benchmark]
    public int PrefillAndTenDecodeSteps()
    {
        var position = 0;
        int[] tokens = [1, 5, 9, 13, 17, 3];
        for (var step = 0; step <= 10; step++)
        {
            var logits = _pipeline.LastLogits("s", tokens, position);
            position += tokens.Length;
            tokens = [Sampler.ArgMax(logits)];
        }
        _pipeline.CloseSession("s");
        return tokens[0];
    }

    [GlobalCleanup]
    public void Cleanup() => _pipeline.Dispose();
}
