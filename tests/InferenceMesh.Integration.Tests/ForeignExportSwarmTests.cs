using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// The shared exports made by torch.onnx.export and the ONNX Runtime GenAI builder, served as they are (no model.json, no
/// tokenizer, graph names of their own) through a 3-node local swarm and driven by token ids: greedy ids through the mesh
/// equal greedy ids from the unsplit file on ONNX Runtime. GPT-2's export has no LM head, so its greedy id is the argmax of
/// the final hidden state (4 features), and it keeps 8 positions; the Llama's is the argmax of its fp16 logits over 32,000.
/// GPT-2's greedy ids are all 3 (one feature dominates its random final state), so seeded sampling at temperature 1 is
/// compared too: it draws from every position's scores, so a wrong state anywhere would change the ids. A synthetic
/// GroupQueryAttention export (<see cref="GqaExport"/>) has each node compute <c>seqlens_k</c> and <c>total_sequence_length</c>.
/// </summary>
public sealed class ForeignExportSwarmTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("gpt2-torch-export", "3,7,11", 5)]
    [InlineData("llama-genai-builder-fp16", "1,5,9,13", 16)]
    [InlineData("gqa-synthetic", "1,5,9,13", 16)]
    public async Task GreedyIdsThroughAThreeNodeSwarmEqualTheUnsplitExportOnOnnxRuntime(string which, string prompt, int newTokens)
    {
        var directory = which switch
        {
            "gpt2-torch-export" => Path.GetDirectoryName(TestModels.Gpt2TorchExport)!,
            "llama-genai-builder-fp16" => Path.GetDirectoryName(TestModels.LlamaGenAiFp16)!,
            _ => SaveGqaExport(),
        };
        var ids = prompt.Split(',').Select(int.Parse).ToList();
        var options = new GenerationOptions(MaxTokens: newTokens);
        List<int> expected;
        using (var unsplit = LocalModel.Open(directory, executor: ExecutorKind.Ort))
            expected = unsplit.GenerateIds(ids, options).ToList();
        Assert.Equal(newTokens, expected.Count);

        var cli = await LocalSwarmHandle.RunCliAsync(["generate", "--model", directory, "--ids", prompt, "--max-tokens", $"{newTokens}", "--executor", "ort"]);
        Assert.True(cli.Code == 0, cli.Error);
        Assert.Equal(string.Join(',', expected) + "\n", cli.Out);

        // Without a tokenizer, text is refused in one line saying to use ids; a malformed id list is refused as bad input.
        var text = await LocalSwarmHandle.RunCliAsync(["generate", "--model", directory, "--prompt", "hello", "--executor", "ort"]);
        Assert.Equal(2, text.Code);
        Assert.Contains("drive it with token ids (--ids", text.Error);
        var malformed = await LocalSwarmHandle.RunCliAsync(["generate", "--model", directory, "--ids", "1,x", "--executor", "ort"]);
        Assert.Equal(2, malformed.Code);
        Assert.Contains("'x' is not a token id", malformed.Error);

        await using var swarm = await LocalSwarmHandle.StartAsync(3, model: directory);
        foreach (var route in new[] { "chained", "relayed" })
        {
            var result = await swarm.RunAsync("prompt", "--ids", prompt, "--max-tokens", $"{newTokens}", "--route", route);
            Assert.True(result.Code == 0, result.Error);
            Assert.Equal(string.Join(',', expected) + "\n", result.Out);
        }
        await using var client = await swarm.ClientAsync(RouteMode.Chained);
        var throughLibrary = new List<int>();
        await foreach (var id in client.GenerateIdsAsync(ids, options)) throughLibrary.Add(id);
        Assert.Equal(expected, throughLibrary);

        var sampling = options with { Temperature = 1, TopP = 1, Seed = 1 };
        List<int> sampledUnsplit;
        using (var unsplit = LocalModel.Open(directory, executor: ExecutorKind.Ort))
            sampledUnsplit = unsplit.GenerateIds(ids, sampling).ToList();
        var sampledMesh = new List<int>();
        await foreach (var id in client.GenerateIdsAsync(ids, sampling)) sampledMesh.Add(id);
        Assert.Equal(sampledUnsplit, sampledMesh);
        Assert.True(sampledUnsplit.Distinct().Count() > 1, $"sampled ids {string.Join(',', sampledUnsplit)} do not vary");
        output.WriteLine($"{which}: {client.Manifest.BlockCount} blocks, greedy ids {string.Join(',', expected)} unsplit, through the CLI and the 3-node swarm (chained, relayed, library); sampled at temperature 1: {string.Join(',', sampledUnsplit)}");
    }

    /// <summary>A GroupQueryAttention export taking seqlens_k and total_sequence_length as inputs, 3 layers, in a directory of its own.</summary>
    private static string SaveGqaExport()
    {
        var directory = TestModels.NewTempDirectory("gqa-export");
        OnnxModelFile.Save(GqaExport.Build(layers: 3, seed: 11), Path.Combine(directory, "model.onnx"));
        return directory;
    }

    [Fact]
    public async Task OptimumMergedExportPrintsTheUnmergedModelsTextUnsplitAndThroughAThreeNodeSwarm()
    {
        var parent = TestModels.NewTempDirectory("optimum-merged");
        try
        {
            // As Optimum lays an export out: decoder_model_merged.onnx and Hugging Face's config.json, no model.json.
            var merged = Path.Combine(parent, "merged");
            Directory.CreateDirectory(merged);
            var model = GraphMutations.OptimumMerged(OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile)));
            OnnxModelFile.Save(model, Path.Combine(merged, "decoder_model_merged.onnx"));
            File.Copy(Path.Combine(TestModels.SmallSynthetic, ModelStore.TokenizerFile), Path.Combine(merged, ModelStore.TokenizerFile));
            var c = TestModels.SmallSyntheticConfig;
            File.WriteAllText(Path.Combine(merged, ForeignModel.HuggingFaceConfigFile),
                $$"""{"architectures": ["LlamaForCausalLM"], "hidden_size": {{c.Dim}}, "intermediate_size": {{c.HiddenDim}}, "num_hidden_layers": {{c.Layers}}, "num_attention_heads": {{c.Heads}}, "num_key_value_heads": {{c.KvHeads}}, "vocab_size": {{c.Vocab}}, "max_position_embeddings": {{c.MaxSequence}}}""");
            string expected;
            using (var original = LocalModel.Open(TestModels.SmallSynthetic, executor: ExecutorKind.Ort))
                expected = string.Concat(original.Generate("the cat", new GenerationOptions(MaxTokens: 12)));

            var unsplit = await LocalSwarmHandle.RunCliAsync(["generate", "--model", merged, "--prompt", "the cat", "--max-tokens", "12", "--executor", "ort"]);
            Assert.True(unsplit.Code == 0, unsplit.Error);
            Assert.Equal(expected + "\n", unsplit.Out);
            await using var swarm = await LocalSwarmHandle.StartAsync(3, model: merged);
            var result = await swarm.RunAsync("prompt", "the cat", "--max-tokens", "12");
            Assert.True(result.Code == 0, result.Error);
            Assert.Equal(expected + "\n", result.Out);
            output.WriteLine($"decoder_model_merged.onnx, unsplit and through 3 nodes: {expected}");
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }
}
