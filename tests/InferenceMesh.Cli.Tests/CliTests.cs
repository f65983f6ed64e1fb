using System.Diagnostics;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Cli.Tests;

public sealed class CliTests
{
    internal static async Task<(int Code, string Out, string Error)> Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CliApp.RunAsync(args, new WriterCliConsole(output, error));
        return (code, output.ToString(), error.ToString());
    }

    internal static void AssertOneLineError((int Code, string Out, string Error) result, string expected)
    {
        Assert.Equal((int)ExitCode.BadInput, result.Code);
        var lines = result.Error.TrimEnd('\n').Split('\n');
        Assert.True(lines.Length == 1, $"expected one error line, got:\n{result.Error}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(expected, lines[0]);
        Assert.DoesNotContain("   at ", result.Error);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public async Task GeneratePrintsTheReferenceText(int? stages)
    {
        string[] extra = stages is null ? [] : ["--stages", stages.Value.ToString()];
        foreach (var prompt in new[] { "", "Once upon a time" })
        {
            var result = await Run(["generate", "--model", TestModels.Stories260K, "--prompt", prompt, "--steps", "256", "--temperature", "0", .. extra]);
            Assert.Equal(0, result.Code);
            Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
        }
    }

    [Theory]
    [InlineData("ilgpu", null)]
    [InlineData("ilgpu", 2)]
    [InlineData("ort", null)]
    public async Task GenerateOnEitherExecutorPrintsTheReferenceText(string executor, int? stages)
    {
        string[] extra = stages is null ? [] : ["--stages", stages.Value.ToString()];
        var result = await Run(["generate", "--model", TestModels.Stories260K, "--executor", executor, .. extra]);
        Assert.Equal(0, result.Code);
        Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
    }

    [Theory]
    [InlineData("1s", "between 2 s and 600 s")]
    [InlineData("11m", "between 2 s and 600 s")]
    [InlineData("soon", "'soon' is not a duration")]
    public async Task NodeRefusesAnAnnouncementTtlOutsideWhatTheDhtKeeps(string ttl, string expected) =>
        AssertOneLineError(await Run("node", "--announce-ttl", ttl), expected);

    [Fact]
    public async Task GenerateChatPrintsOnlyTheReplyAndUnknownTemplatesAreRefused()
    {
        const string prompt = "Once upon a time";
        var plain = await Run("generate", "--model", TestModels.Stories260K, "--chat", "--prompt", prompt, "--steps", "256");
        Assert.Equal(0, plain.Code);
        Assert.Equal(TestModels.Stories260KReferenceText[prompt.Length..] + "\n", plain.Out);

        var templated = await Run("generate", "--model", TestModels.Stories260K, "--system", "Be brief.", "--message", "user: Hi", "--message", "assistant: Hello",
            "--prompt", "Tell me a story.", "--chat-template", "llama2", "--max-tokens", "5");
        Assert.Equal(0, templated.Code);
        Assert.DoesNotContain("[INST]", templated.Out);

        AssertOneLineError(await Run("generate", "--model", TestModels.Stories260K, "--chat", "--prompt", "Hi", "--chat-template", "vicuna"), "expected chatml|llama3|llama2|mistral");
        AssertOneLineError(await Run("generate", "--model", TestModels.Stories260K, "--message", "robot: Hi"), "role system, user or assistant");
    }

    [Theory]
    [InlineData("--max-batch", "0")]
    [InlineData("--prefill-chunk", "-1")]
    public async Task NodeRefusesABatchSizeOrPrefillChunkBelowOne(string option, string value) =>
        AssertOneLineError(await Run("node", option, value), "must be at least 1");

    [Fact]
    public async Task NodeRefusesAFaultUnlessTheEnvironmentAllowsFaults()
    {
        Assert.NotEqual("1", Environment.GetEnvironmentVariable("INFERENCEMESH_ALLOW_FAULTS"));
        AssertOneLineError(await Run("node", "--fault", "noise=0.1"), "INFERENCEMESH_ALLOW_FAULTS=1");
    }

    [Theory]
    [InlineData("--verify", "always", "unknown --verify 'always'")]
    [InlineData("--check-rate", "1.5", "--check-rate 1.5 is outside 0..1")]
    public async Task PromptRefusesUnknownVerificationSettings(string option, string value, string expected) =>
        AssertOneLineError(await Run("prompt", "x", option, value), expected);

    [Fact]
    public async Task UnknownExecutorIsRefused() =>
        AssertOneLineError(await Run("generate", "--model", TestModels.Stories260K, "--executor", "tpu"), "unknown executor 'tpu'");

    [Fact]
    public async Task ImportSplitThenGenerateFromTheSplitDirectory()
    {
        var imported = TestModels.NewTempDirectory("cli-import");
        var split = TestModels.NewTempDirectory("cli-split");
        Assert.Equal(0, (await Run("model", "import", "--llama2c", TestModels.Stories260KCheckpoint, "--tokenizer", TestModels.Stories260KTokenizer, "--out", imported)).Code);
        var splitResult = await Run("model", "split", Path.Combine(imported, "model.onnx"), "--blocks", "0:2,2:5", "--out", split);
        Assert.Equal(0, splitResult.Code);
        Assert.Contains(Manifest.Load(split).ModelId, splitResult.Out);
        var result = await Run("generate", "--model", split);
        Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
    }

    [Fact]
    public async Task SynthWritesAModelThatGenerates()
    {
        var directory = TestModels.NewTempDirectory("cli-synth");
        Assert.Equal(0, (await Run("model", "synth", "--dim", "32", "--layers", "2", "--heads", "4", "--kv-heads", "2", "--ffn", "64", "--vocab", "300", "--seed", "5", "--out", directory)).Code);
        var first = await Run("generate", "--model", directory, "--max-tokens", "20", "--stages", "2");
        var second = await Run("generate", "--model", directory, "--max-tokens", "20");
        Assert.Equal(0, first.Code);
        Assert.Equal(first.Out, second.Out);
    }

    [Fact]
    public async Task TruncatedCheckpoint()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("cli-bad"), "cut.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(TestModels.Stories260KCheckpoint)[..4096]);
        AssertOneLineError(await Run("model", "import", "--llama2c", path, "--tokenizer", TestModels.Stories260KTokenizer, "--out", TestModels.NewTempDirectory("cli-out")), "truncated");
    }

    [Fact]
    public async Task MismatchedTokenizer() =>
        AssertOneLineError(await Run("model", "import", "--llama2c", TestModels.Stories260KCheckpoint,
            "--tokenizer", Path.Combine(TestModels.SmallSynthetic, ModelStore.TokenizerFile), "--out", TestModels.NewTempDirectory("cli-out")), "vocabulary is 512");

    [Fact]
    public async Task FileThatIsNotOnnx()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("cli-bad"), "model.onnx");
        File.WriteAllText(path, "{ \"not\": \"onnx\" }");
        AssertOneLineError(await Run("model", "split", path, "--stages", "2", "--out", TestModels.NewTempDirectory("cli-out")), "is not an ONNX model");
    }

    [Fact]
    public async Task SplitsTheSharedExportsWithTheTokenInputAndOutputNamedOrInferred()
    {
        var gpt2 = TestModels.NewTempDirectory("cli-gpt2");
        var named = await Run("model", "split", TestModels.Gpt2TorchExport, "--token-input", "input_ids", "--output", "last_state", "--stages", "12", "--out", gpt2);
        Assert.Equal(0, named.Code);
        Assert.Equal(14, Manifest.Load(gpt2).Stages.Count);
        Assert.Equal("last_state", Manifest.Load(gpt2).Stages[^1].ActivationOutput);

        var llama = TestModels.NewTempDirectory("cli-llama");
        Assert.Equal(0, (await Run("model", "split", TestModels.LlamaGenAiFp16, "--stages", "2", "--out", llama)).Code);
        var stages = Manifest.Load(llama).Stages;
        Assert.Equal(4, stages.Count);
        Assert.All(stages.Where(s => s.DataFile is not null), s => Assert.True(File.Exists(Path.Combine(llama, s.DataFile!))));
        // By default the fused skip-norm at the layer boundary is rewritten, so one fp16 row of the residual stream crosses it.
        Assert.Equal("16", Shape(stages[2].Inputs.Single(i => i.Name == stages[2].ActivationInput))[^1]);
        var fused = TestModels.NewTempDirectory("cli-llama-fused");
        Assert.Equal(0, (await Run("model", "split", TestModels.LlamaGenAiFp16, "--stages", "2", "--keep-fused-norms", "--out", fused)).Code);
        var fusedStages = Manifest.Load(fused).Stages;
        Assert.Equal("32", Shape(fusedStages[2].Inputs.Single(i => i.Name == fusedStages[2].ActivationInput))[^1]);

        AssertOneLineError(await Run("model", "split", TestModels.Gpt2TorchExport, "--output", "hidden", "--stages", "2", "--out", TestModels.NewTempDirectory("cli-out")),
            "the output 'hidden' is not an output of the graph");
    }

    private static string[] Shape(TensorInfo info) => [.. info.Shape];

    [Fact]
    public async Task GraphWithNoCutPoint()
    {
        var g = new OnnxGraphBuilder("no-blocks");
        g.Input("input_ids", DType.Int64, "n");
        g.NodeNamed("Gather", "logits", [g.Floats("table", new float[8], 4, 2), "input_ids"]);
        g.Output("logits", DType.Float32, "n", "2");
        var path = Path.Combine(TestModels.NewTempDirectory("cli-bad"), "model.onnx");
        OnnxModelFile.Save(g.ToModel(17, "test"), path);
        AssertOneLineError(await Run("model", "split", path, "--stages", "1", "--out", TestModels.NewTempDirectory("cli-out")), "cannot split this graph");
    }

    [Fact]
    public async Task MaxTokensCountsNewTokensNotThePrompt()
    {
        const string Prompt = "Once upon a time";
        var promptTokens = InferenceMesh.Onnx.Tokenizer.Llama2cTokenizer.Load(TestModels.Stories260KTokenizer).Encode(Prompt).Count;
        var tenNew = await Run("generate", "--model", TestModels.Stories260K, "--prompt", Prompt, "--max-tokens", "10");
        var sameByPositions = await Run("generate", "--model", TestModels.Stories260K, "--prompt", Prompt, "--steps", (promptTokens - 1 + 10).ToString());
        var tenPositions = await Run("generate", "--model", TestModels.Stories260K, "--prompt", Prompt, "--steps", "10");
        Assert.Equal(0, tenNew.Code);
        Assert.Equal(sameByPositions.Out, tenNew.Out);
        Assert.NotEqual(tenPositions.Out, tenNew.Out);
        Assert.StartsWith(Prompt, tenNew.Out);
        Assert.StartsWith(tenNew.Out.TrimEnd('\n'), TestModels.Stories260KReferenceText);
    }

    [Fact]
    public void MeshErrorsMapToExitCodesByKind()
    {
        Assert.Equal(ExitCode.MeshUnavailable, CliApp.ExitCodeOf(MeshErrorCode.RouteUnavailable));
        Assert.Equal(ExitCode.MeshUnavailable, CliApp.ExitCodeOf(MeshErrorCode.PeersUnreachable));
        Assert.Equal(ExitCode.Timeout, CliApp.ExitCodeOf(MeshErrorCode.Timeout));
        Assert.Equal(ExitCode.BadInput, CliApp.ExitCodeOf(MeshErrorCode.ContextOverflow));
    }

    [Fact]
    public async Task PromptLongerThanTheContext() =>
        AssertOneLineError(await Run("generate", "--model", TestModels.Stories260K, "--prompt", string.Join(' ', Enumerable.Repeat("Once upon a time", 200))), "context is 512");

    [Fact]
    public async Task VerboseAddsTheStackTrace()
    {
        var result = await Run("generate", "--model", TestModels.Stories260K, "--verbose", "--prompt", string.Join(' ', Enumerable.Repeat("Once upon a time", 200)));
        Assert.Equal((int)ExitCode.BadInput, result.Code);
        Assert.Contains("   at ", result.Error);
    }

    [Fact]
    public async Task MissingModelDirectory() =>
        AssertOneLineError(await Run("generate", "--model", "/nonexistent/model"), "does not exist");

    [Fact]
    public async Task TheExecutableExitsNonZeroWithOneLine()
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
        var start = new ProcessStartInfo("dotnet", [cli, "generate", "--model", "/nonexistent/model"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(60)).Token);
        Assert.Equal((int)ExitCode.BadInput, process.ExitCode);
        Assert.Single(error.TrimEnd('\n').Split('\n'));
    }
}
