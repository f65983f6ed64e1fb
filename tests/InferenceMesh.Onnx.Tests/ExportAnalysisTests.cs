using InferenceMesh.Core;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Onnx;

namespace InferenceMesh.Onnx.Tests;

public sealed class ExportAnalysisTests
{
    [Fact]
    public void TorchGpt2ExportHasTwelveBlocksWithStackedKvBoundToItsPasts()
    {
        var analysis = new GraphAnalysis(OnnxModelFile.Load(TestModels.Gpt2TorchExport));
        Assert.Equal("input_ids", analysis.TokenInput);
        Assert.Equal("last_state", analysis.FinalOutput);
        Assert.Equal(12, analysis.BlockCount);
        Assert.All(analysis.BoundaryTensors, b => Assert.Single(b));
        Assert.All(Enumerable.Range(0, 12), i => Assert.Equal($"past_{i}", analysis.PastOf[$"present_{i}"]));
    }

    [Fact]
    public void GenAiLlamaExportCrossesEachLayerBoundaryWithTwoTensors()
    {
        var analysis = new GraphAnalysis(OnnxModelFile.Load(TestModels.LlamaGenAiFp16));
        Assert.Equal(2, analysis.BlockCount);
        Assert.Equal([1, 2, 1], analysis.BoundaryTensors.Select(b => b.Count));
        Assert.Equal("past_key_values.1.value", analysis.PastOf["present.1.value"]);
        var stages = GraphSplitter.Split(OnnxModelFile.Load(TestModels.LlamaGenAiFp16), analysis, BlockRange.SplitEvenly(2, 2));
        Assert.Contains(stages[2].Model.Graph.Node, n => n.Domain == "com.microsoft" && n.OpType == "MultiHeadAttention");
        Assert.Contains(stages[2].Model.Graph.Node, n => n.OpType == "Split");
        Assert.Equal(["attention_mask", "position_ids"], stages[2].Descriptor.ContextInputs.Order());
    }

    [Fact]
    public void SkipConnectionAcrossEveryBlockIsNamedWhenTheSplitIsRefused()
    {
        var model = OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile));
        var last = model.Graph.Node.Single(n => n.Output.Contains("layers.4.ffn_residual"));
        last.Output[0] = "layers.4.ffn_residual_inner";
        var skip = new NodeProto { OpType = "Add", Name = "long_skip" };
        skip.Input.AddRange(["layers.4.ffn_residual_inner", "inputs_embeds"]);
        skip.Output.Add("layers.4.ffn_residual");
        model.Graph.Node.Add(skip);
        var error = Assert.Throws<MeshException>(() => GraphSplitter.Split(model, BlockRange.SplitEvenly(5, 2)));
        Assert.Contains("tensor 'inputs_embeds' crosses the boundaries", error.Message);
        Assert.Contains("skip connection across blocks", error.Message);
    }
}
