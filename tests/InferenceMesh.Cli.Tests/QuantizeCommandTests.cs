using System.Diagnostics;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Cli.Tests;

public sealed class QuantizeCommandTests
{
    [Fact]
    public async Task ImportWithQuantizeInt4RecordsItSplitsAndGeneratesStoriesText()
    {
        var parent = TestModels.NewTempDirectory("cli-int4");
        try
        {
            var imported = Path.Combine(parent, "imported");
            var import = await CliTests.Run("model", "import", "--llama2c", TestModels.Stories260KCheckpoint, "--tokenizer", TestModels.Stories260KTokenizer,
                "--out", imported, "--quantize", "int4");
            Assert.True(import.Code == 0, import.Error);
            Assert.Contains("imported stories260K-int4: dim 64, 5 blocks", import.Out);
            Assert.Contains("weights int4 block 32 MatMulNBits accuracy 4", import.Out);
            Assert.Equal("int4 block 32 MatMulNBits accuracy 4", ModelStore.TryReadDescription(imported)!.Quantization);

            var split = Path.Combine(parent, "split");
            var cut = await CliTests.Run("model", "split", imported, "--stages", "2", "--out", split);
            Assert.True(cut.Code == 0, cut.Error);
            Assert.Equal("int4 block 32 MatMulNBits accuracy 4", Manifest.Load(split).Quantization);

            var generated = await CliTests.Run("generate", "--model", split, "--prompt", "Once upon a time", "--max-tokens", "16", "--executor", "ort");
            Assert.True(generated.Code == 0, generated.Error);
            Assert.StartsWith("Once upon a time, there was a little girl named Lily.", generated.Out);
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public async Task HuggingFaceImportWithQuantizeInt8KeepsTheQuantizedWeightsInExternalDataAndGenerates()
    {
        var parent = TestModels.NewTempDirectory("cli-hf-int8");
        try
        {
            // An untied classifier, so the LM head is quantized too and written as the graph's logits output.
            var source = HuggingFaceFixtures.Stories260K(Path.Combine(parent, "source"), tied: false, shards: 1);
            var imported = Path.Combine(parent, "imported");
            var import = await CliTests.Run("model", "import", "--hf", source, "--out", imported, "--quantize", "int8");
            Assert.True(import.Code == 0, import.Error);
            Assert.Contains("(int8 block 32 MatMulNBits accuracy 4)", import.Out);
            var model = OnnxModelFile.Load(Path.Combine(imported, ModelStore.ModelFile));
            Assert.Equal(36, model.Graph.Node.Count(n => n.OpType == "MatMulNBits" && n.Domain == OnnxGraphBuilder.MicrosoftDomain));
            Assert.DoesNotContain(model.Graph.Node, n => n.OpType == "MatMul" && model.Graph.Initializer.Any(i => i.Name == n.Input[1]));
            Assert.True(OnnxExternalData.HasExternal(model));

            var generated = await CliTests.Run("generate", "--model", imported, "--prompt", "Once upon a time", "--max-tokens", "16", "--executor", "ort");
            Assert.True(generated.Code == 0, generated.Error);
            Assert.StartsWith("Once upon a time, there was a little girl named Lily.", generated.Out);
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public async Task QuantizeOfAnUnknownKindIsRefusedBeforeAnythingIsWritten()
    {
        var output = Path.Combine(Path.GetTempPath(), $"inferencemesh-never-written-{Guid.NewGuid():N}");
        var result = await CliTests.Run("model", "synth", "--dim", "64", "--layers", "1", "--heads", "4", "--kv-heads", "4", "--ffn", "96",
            "--out", output, "--quantize", "int3");
        Assert.NotEqual(0, result.Code);
        Assert.Contains("int3", result.Error);
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public async Task BenchQuantizePrintsSpeedMemoryQualityAndHeldOutPerplexityOfEachModelAgainstTheFirst()
    {
        var parent = TestModels.NewTempDirectory("cli-bench-quantize");
        try
        {
            var int8 = Path.Combine(parent, "int8");
            Assert.Equal(0, (await CliTests.Run("model", "import", "--llama2c", TestModels.Stories260KCheckpoint, "--tokenizer", TestModels.Stories260KTokenizer,
                "--out", int8, "--quantize", "int8")).Code);
            // The real executable: the bench measures memory in a fresh process of itself per model.
            var cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
            var start = new ProcessStartInfo("dotnet", [cli, "bench", "quantize", "--models", $"fp32={TestModels.Stories260K},int8={int8}", "--tokens", "8", "--repeat", "1",
                "--prompts", "2", "--compare-tokens", "4", "--held-out", Path.Combine(TestModels.RepositoryRoot, "models", "held-out", "stories.txt")]) { RedirectStandardError = true, RedirectStandardOutput = true };
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEndAsync();
            var output = await process.StandardOutput.ReadToEndAsync();
            await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(120)).Token);
            Assert.True(process.ExitCode == 0, await error);
            // Bytes on disk are the model's ONNX files (1,091,042 for stories260K in fp32 when measured).
            var fp32Bytes = Directory.GetFiles(TestModels.Stories260K, "*.onnx*").Sum(f => new FileInfo(f).Length);
            Assert.Matches($@"\| fp32 \| exact \| {fp32Bytes:N0} \| [\d,]+ \| [\d,]+ \| [\d.]+ \|", output);
            Assert.Matches(@"\| int8 \| int8 block 32 MatMulNBits accuracy 4 \| [\d,]+ \| [\d,]+ \| [\d,]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ – [\d.]+ \| [\d.]+ % \|", output);
            // Perplexity on our held-out stories closes each model's row (fp32 5.79, int8 5.79 when measured).
            Assert.Matches(@"\| fp32 \| exact \|.* \| 5\.\d+ \|\r?\n", output);
            Assert.Matches(@"\| int8 \| int8 .* \| 5\.\d+ \|\r?\n", output);
            Assert.Contains("perplexity over the 8 passages of", output);
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }
}
