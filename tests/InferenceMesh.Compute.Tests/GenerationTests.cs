using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Compute.Tests;

public sealed class GenerationTests
{
    [Theory]
    [InlineData(null, "")]
    [InlineData(null, "Once upon a time")]
    [InlineData(2, "")]
    [InlineData(3, "Once upon a time")]
    [InlineData(5, "")]
    [InlineData(5, "Once upon a time")]
    public void GreedyGenerationPrintsTheReferenceText(int? stages, string prompt)
    {
        using var model = LocalModel.Open(TestModels.Stories260K, stages);
        var text = string.Concat(model.Generate(prompt, new GenerationOptions(Temperature: 0f, MaxPositions: 256)));
        Assert.Equal(TestModels.Stories260KReferenceText, text);
    }

    [Fact]
    public void SplitDirectoryGeneratesTheReferenceText()
    {
        var split = TestModels.NewTempDirectory("split-gen");
        ModelStore.Split(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile), n => BlockRange.ParseContiguousList("0:2,2:5", n), split);
        using var model = LocalModel.Open(split);
        Assert.Equal(4, model.Pipeline.Stages.Count);
        Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(model.Generate("", new GenerationOptions(Temperature: 0f, MaxPositions: 256))));
    }

    [Fact]
    public void SplitOfAModelWithTokenizerJsonCarriesItsFilesAndGeneratesTheReferenceText()
    {
        var imported = TestModels.NewTempDirectory("hf-tok-model");
        foreach (var file in new[] { ModelStore.ModelFile, ModelStore.DescriptionFile })
            File.Copy(Path.Combine(TestModels.Stories260K, file), Path.Combine(imported, file));
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, imported);
        File.WriteAllText(Path.Combine(imported, HfTokenizer.GenerationConfigFile), """{"bos_token_id": 1, "eos_token_id": 2}""");
        var split = TestModels.NewTempDirectory("hf-tok-split");
        var manifest = ModelStore.Split(Path.Combine(imported, ModelStore.ModelFile), n => BlockRange.SplitEvenly(n, 2), split);
        Assert.Equal(HfTokenizer.TokenizerFile, manifest.TokenizerFile);
        foreach (var file in new[] { HfTokenizer.TokenizerFile, HfTokenizer.ConfigFile, HfTokenizer.GenerationConfigFile })
            Assert.True(File.Exists(Path.Combine(split, file)), $"{file} was not copied into the split directory");
        Assert.False(File.Exists(Path.Combine(split, TokenizerLoader.Llama2cFile)));
        foreach (var directory in new[] { imported, split })
        {
            using var model = LocalModel.Open(directory);
            Assert.IsType<HfTokenizer>(model.Tokenizer);
            foreach (var prompt in new[] { "", "Once upon a time" })
                Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(model.Generate(prompt, new GenerationOptions(Temperature: 0f, MaxPositions: 256))));
        }
    }

    [Fact]
    public void ChatWithAModelWithoutTemplateContinuesThePlainTextAndYieldsOnlyTheReply()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        const string prompt = "Once upon a time";
        var reply = string.Concat(model.GenerateChat([ChatTurn.User(prompt)], new GenerationOptions(Temperature: 0f, MaxPositions: 256)));
        Assert.Equal(TestModels.Stories260KReferenceText[prompt.Length..], reply);
    }

    [Fact]
    public void ChatTemplateOverrideRendersThePromptInTheFamilysForm()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        var options = new GenerationOptions(MaxTokens: 8, Temperature: 0f);
        var turns = new[] { ChatTurn.User("Tell me a story.") };
        var reply = string.Concat(model.GenerateChat(turns, options, ChatTemplateFamily.Llama2));
        var rendered = ChatTemplate.For(ChatTemplateFamily.Llama2).Render(turns);
        var whole = string.Concat(model.Generate(rendered.Replace("<s>", "", StringComparison.Ordinal), options));
        Assert.EndsWith(reply, whole);
        Assert.StartsWith("[INST] Tell me a story. [/INST]", whole);
    }

    /// <summary>A model whose steps carry at most 3 tokens (<see cref="Manifest.MaxStepPositions"/>) has its prompt prefilled in consecutive steps of 3, and prints the same text.</summary>
    [Fact]
    public void APromptLongerThanAStepTakesIsPrefilledInPiecesAndGivesTheSameText()
    {
        using var model = LocalModel.Open(TestModels.Stories260K, executor: ExecutorKind.Ort);
        var options = new GenerationOptions(MaxTokens: 20, Temperature: 0f);
        string Run(int maxStepTokens, List<(int Tokens, int Start)> steps)
        {
            var session = Guid.NewGuid().ToString("N");
            var text = string.Concat(new TextGenerator(model.Tokenizer, model.Config.MaxSequence, maxStepTokens: maxStepTokens).GenerateAsync("Once upon a time", options, (tokens, start, _) =>
            {
                steps.Add((tokens.Length, start));
                return ValueTask.FromResult(model.Pipeline.LastLogits(session, tokens, start));
            }).ToBlockingEnumerable());
            model.Pipeline.CloseSession(session);
            return text;
        }
        var whole = new List<(int Tokens, int Start)>();
        var pieces = new List<(int Tokens, int Start)>();
        var expected = Run(int.MaxValue, whole);
        Assert.Equal(expected, Run(3, pieces));
        var prompt = whole[0].Tokens;
        Assert.True(prompt > 3, $"the prompt is {prompt} tokens");
        Assert.Equal(Enumerable.Range(0, (prompt + 2) / 3).Select(i => (Math.Min(3, prompt - 3 * i), 3 * i)), pieces.Take((prompt + 2) / 3));
        Assert.Equal(whole.Skip(1), pieces.Skip((prompt + 2) / 3));
    }

    [Fact]
    public void HfTokenizerStopsAtAnyEosIdAndAChatReplyIsDecodedOnItsOwn()
    {
        var directory = TestModels.NewTempDirectory("hf-tok-gen");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory);
        File.WriteAllText(Path.Combine(directory, HfTokenizer.GenerationConfigFile), """{"eos_token_id": [2, 317]}""");
        using var tokenizer = HfTokenizer.Load(directory);
        // A step that always prefers " Once" (403), then " Lily" (317, an EOS id here) from the second step on.
        var steps = 0;
        float[] Step(int[] tokens, int start)
        {
            var logits = new float[512];
            logits[steps++ == 0 ? 403 : 317] = 10f;
            return logits;
        }
        var prompt = tokenizer.EncodeWithSpecialTokens("<s>[INST] Hi [/INST]", addBos: false);
        var options = new GenerationOptions(MaxTokens: 5, Temperature: 0f);
        var whole = string.Concat(new TextGenerator(tokenizer, 512).GenerateAsync(prompt, options, (t, s, _) => ValueTask.FromResult(Step(t, s))).ToBlockingEnumerable());
        Assert.Equal("[INST] Hi [/INST] Once", whole);
        Assert.Equal(2, steps);
        steps = 0;
        var alone = new TextGenerator(tokenizer, 512, decodeReplyAlone: true).GenerateAsync(prompt, options, (t, s, _) => ValueTask.FromResult(Step(t, s))).ToBlockingEnumerable().ToList();
        Assert.Equal("Once", alone[^1]);
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndDiffersFromGreedy()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        var options = new GenerationOptions(64, 1.0f, 0.9f, 1234);
        var first = string.Concat(model.Generate("Lily", options));
        var second = string.Concat(model.Generate("Lily", options));
        var otherSeed = string.Concat(model.Generate("Lily", options with { Seed = 99 }));
        Assert.Equal(first, second);
        Assert.NotEqual(first, otherSeed);
        Assert.StartsWith("Lily", first);
    }

    [Fact]
    public void PromptLongerThanTheContextIsRefused()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        var prompt = string.Join(' ', Enumerable.Repeat("Once upon a time", 200));
        var error = Assert.Throws<MeshException>(() => model.Generate(prompt, new GenerationOptions()).ToList());
        Assert.Equal(MeshErrorCode.ContextOverflow, error.Code);
    }

    [Fact]
    public void MaxTokensCountsNewTokensAfterThePrompt()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        // "Once upon a time" is BOS + 4 pieces, all printed; 8 new tokens follow them.
        var pieces = model.Generate("Once upon a time", new GenerationOptions(8, 0f)).ToList();
        Assert.Equal(TestModels.Stories260KReferenceText[..pieces.Sum(p => p.Length)], string.Concat(pieces));
        Assert.Equal(4 + 8, pieces.Count);
    }

    [Fact]
    public void MaxPositionsCountsThePromptAsLlama2cStepsDo()
    {
        using var model = LocalModel.Open(TestModels.Stories260K);
        var pieces = model.Generate("Once upon a time", new GenerationOptions(100, 0f, MaxPositions: 8)).ToList();
        Assert.Equal(8, pieces.Count);
    }
}
