using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using Microsoft.ML.OnnxRuntime;
using Onnx;

namespace InferenceMesh.Compute.Tests;

/// <summary>The rewritten skip-norms compute what ONNX Runtime's fused kernels compute, on graphs of one such node.</summary>
public sealed class SkipNormUnfusingTests
{
    private const int Width = 24;

    private static ModelProto OneNode(string op, bool sumFeedsOn, bool withBeta)
    {
        var random = new Random(4);
        var g = new OnnxGraphBuilder("skipnorm");
        g.Input("a", DType.Float32, "1", "t", $"{Width}");
        g.Input("b", DType.Float32, "1", "t", $"{Width}");
        var gamma = g.Floats("gamma", Enumerable.Range(0, Width).Select(_ => (float)random.NextDouble() + 0.5f).ToArray(), Width);
        var beta = g.Floats("beta", Enumerable.Range(0, Width).Select(_ => (float)random.NextDouble() - 0.5f).ToArray(), Width);
        g.Graph.Node.Add(new NodeProto
        {
            OpType = op,
            Domain = OnnxGraphBuilder.MicrosoftDomain,
            Name = "fused",
            Input = { withBeta ? ["a", "b", gamma, beta] : new[] { "a", "b", gamma } },
            Output = { "normalized", "", "", sumFeedsOn ? "sum" : "" },
            Attribute = { OnnxGraphBuilder.Attr("epsilon", 1e-5f) },
        });
        g.Output("normalized", DType.Float32, "1", "t", $"{Width}");
        if (sumFeedsOn)
        {
            g.NodeNamed("Mul", "twice", ["sum", g.ScalarFloat("two", 2f)]);
            g.Output("twice", DType.Float32, "1", "t", $"{Width}");
        }
        return g.ToModel(17, "test");
    }

    private static Dictionary<string, float[]> Run(ModelProto model, float[] a, float[] b)
    {
        using var session = new InferenceSession(model.ToByteArray());
        using var x = OrtValue.CreateTensorValueFromMemory(a, [1, a.Length / Width, Width]);
        using var y = OrtValue.CreateTensorValueFromMemory(b, [1, b.Length / Width, Width]);
        var names = session.OutputMetadata.Keys.ToList();
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, ["a", "b"], [x, y], names);
        return names.Select((n, i) => (n, outputs[i].GetTensorDataAsSpan<float>().ToArray())).ToDictionary(p => p.n, p => p.Item2);
    }

    [Theory]
    [InlineData("SkipSimplifiedLayerNormalization", false)]
    [InlineData("SkipLayerNormalization", true)]
    [InlineData("SkipLayerNormalization", false)]
    public void TheStandardFormEqualsTheFusedKernel(string op, bool withBeta)
    {
        var fused = OneNode(op, sumFeedsOn: true, withBeta);
        var (unfused, rewritten) = SkipNormUnfusing.Unfuse(fused);
        Assert.Equal(1, rewritten);
        Assert.DoesNotContain(unfused.Graph.Node, n => n.Domain == "com.microsoft");
        var random = new Random(8);
        var a = Enumerable.Range(0, 3 * Width).Select(_ => (float)random.NextDouble() * 4 - 2).ToArray();
        var b = Enumerable.Range(0, 3 * Width).Select(_ => (float)random.NextDouble() * 4 - 2).ToArray();
        var expected = Run(fused, a, b);
        var actual = Run(unfused, a, b);
        foreach (var (name, values) in expected)
            for (var i = 0; i < values.Length; i++)
                Assert.True(Math.Abs(values[i] - actual[name][i]) <= 1e-5, $"{name}[{i}]: fused {values[i]}, unfused {actual[name][i]}");
    }

    [Fact]
    public void ANodeWhoseSumGoesNowhereStaysFused()
    {
        var model = OneNode("SkipSimplifiedLayerNormalization", sumFeedsOn: false, withBeta: false);
        var (same, rewritten) = SkipNormUnfusing.Unfuse(model);
        Assert.Equal(0, rewritten);
        Assert.Same(model, same);
    }
}
