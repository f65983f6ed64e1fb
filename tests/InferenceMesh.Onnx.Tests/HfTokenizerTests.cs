using System.Text;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.Tokenizers;

namespace InferenceMesh.Onnx.Tests;

public sealed class HfTokenizerTests
{
    private static readonly Lazy<string> Tok512JsonDirectory = new(() =>
    {
        var directory = TestModels.NewTempDirectory("tok512-hf");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory);
        return directory;
    });

    private static readonly string[] Texts =
    [
        "Once upon a time",
        "Once upon a time, there was a little girl named Lily. She loved to play outside.",
        "She said, \"I'm sorry!\"\nThe end.",
        "  two leading spaces and trailing  ",
        "tabs\tand\nnew\n\nlines",
        "ünïcödé — 日本語 and emoji 🙂 survive through byte fallback",
        "é!",
        "Ñandú, façade, naïve, Zürich, São Paulo, Ελληνικά, русский, עברית, العربية",
        "1234567890 !@#$%^&*()_+-=[]{}|;':,./<>?",
        "the the the the thethethe",
        "a",
        " ",
        "\u00A0non-breaking\u2009thin",
    ];

    private static HfTokenizer Tok512Json() => HfTokenizer.Load(Tok512JsonDirectory.Value);

    public static TheoryData<string> EquivalenceTexts()
    {
        var data = new TheoryData<string>();
        foreach (var text in Texts) data.Add(text);
        return data;
    }

    [Theory]
    [MemberData(nameof(EquivalenceTexts))]
    public void Tok512AsTokenizerJsonEncodesAndDecodesLikeLlama2c(string text)
    {
        var llama2c = Llama2cTokenizer.Load(TestModels.Stories260KTokenizer);
        using var hf = Tok512Json();
        var expected = llama2c.Encode(text);
        Assert.Equal(expected, hf.Encode(text, addBos: true));
        Assert.Equal(llama2c.Decode(expected), hf.Decode(expected));
        Assert.Equal(text, hf.Decode(hf.Encode(text, addBos: true)));
    }

    [Fact]
    public void Tok512AsTokenizerJsonMatchesLlama2cOnTheReferenceTextLineByLineAndWhole()
    {
        var llama2c = Llama2cTokenizer.Load(TestModels.Stories260KTokenizer);
        using var hf = Tok512Json();
        var reference = TestModels.Stories260KReferenceText;
        var lines = reference.Split('\n').Append(reference).ToList();
        Assert.True(lines.Count > 2);
        foreach (var line in lines)
            Assert.Equal(llama2c.Encode(line), hf.Encode(line, addBos: true));
        for (var i = 1; i < llama2c.Encode(reference).Count; i++)
        {
            var ids = llama2c.Encode(reference);
            Assert.Equal(llama2c.DecodeBytes(ids[i - 1], ids[i]).ToArray(), hf.DecodeBytes(ids[i - 1], ids[i]).ToArray());
        }
    }

    [Fact]
    public void Tok512AsTokenizerJsonReadsBosEosAndVocabularyFromTheConfig()
    {
        using var hf = Tok512Json();
        Assert.Equal(512, hf.VocabSize);
        Assert.Equal(1, hf.BosId);
        Assert.Equal([2], hf.EosIds);
        Assert.True(hf.AddsBos);
        Assert.True(hf.IsSentencePiece);
        Assert.Equal("<s>", hf.BosToken);
        Assert.Null(hf.ChatTemplateSource);
        Assert.Equal([403, 407], hf.Encode("Once upon", addBos: false));
        Assert.Equal([1, 2], hf.EncodeWithSpecialTokens("<s></s>", addBos: false));
    }

    [Fact]
    public void GenerationConfigGivesSeveralEosIdsAndTheBos()
    {
        var directory = TestModels.NewTempDirectory("tok512-gen");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory);
        File.WriteAllText(Path.Combine(directory, HfTokenizer.GenerationConfigFile), """{"bos_token_id": 1, "eos_token_id": [2, 0, 300]}""");
        using var hf = HfTokenizer.Load(directory);
        Assert.Equal([0, 2, 300], hf.EosIds.Order());
        Assert.True(hf.IsEndOfText(300));
        Assert.False(hf.IsEndOfText(1));
    }

    [Theory]
    [InlineData("Hello world", new[] { 15496, 995 })]
    [InlineData(" Hello", new[] { 18435 })]
    [InlineData("<|endoftext|>", new[] { 50256 })]
    public void Gpt2FromItsShippedVocabularyGivesKnownIds(string text, int[] expected)
    {
        using var gpt2 = HfTokenizer.Load(Gpt2TokenizerFixture.Path);
        Assert.Equal(expected, gpt2.EncodeWithSpecialTokens(text, addBos: false));
    }

    [Fact]
    public void Gpt2IsByteLevelWithoutBosAndEndsAtEndOfText()
    {
        using var gpt2 = HfTokenizer.Load(Gpt2TokenizerFixture.Path);
        Assert.Equal(50257, gpt2.VocabSize);
        Assert.False(gpt2.IsSentencePiece);
        Assert.False(gpt2.AddsBos);
        Assert.Equal([Gpt2TokenizerFixture.EndOfText], gpt2.EosIds);
        Assert.Equal([15496, 995], gpt2.Encode("Hello world", gpt2.AddsBos));
    }

    [Theory]
    [MemberData(nameof(EquivalenceTexts))]
    public void Gpt2IdsEqualMicrosoftTiktokenAndRoundTrip(string text)
    {
        using var gpt2 = HfTokenizer.Load(Gpt2TokenizerFixture.Path);
        var tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        var ids = gpt2.Encode(text, addBos: false);
        Assert.Equal(tiktoken.EncodeToIds(text), ids);
        Assert.Equal(text, gpt2.Decode(ids));
    }

    [Fact]
    public void StreamingByteLevelDecodeNeverPrintsHalfACharacter()
    {
        using var gpt2 = HfTokenizer.Load(Gpt2TokenizerFixture.Path);
        const string text = "日本語 🙂 ünï";
        var ids = gpt2.Encode(text, addBos: false);
        var decoder = new StreamingTextDecoder();
        var printed = new StringBuilder();
        var previous = -1;
        foreach (var id in ids)
        {
            var piece = decoder.Append(gpt2.DecodeBytes(previous, id));
            Assert.DoesNotContain('\uFFFD', piece);
            if (piece.Length > 0) Assert.False(char.IsHighSurrogate(piece[^1]), "a surrogate pair was split");
            printed.Append(piece);
            previous = id;
        }
        Assert.True(ids.Count > text.Length / 2, "the emoji and CJK characters span several byte-level tokens");
        Assert.Equal(text, printed.ToString());
    }

    [Theory]
    [InlineData("WordPiece")]
    [InlineData("Unigram")]
    [InlineData("WordLevel")]
    public void UnsupportedModelTypeIsOneClearError(string type)
    {
        var directory = TestModels.NewTempDirectory("tok-unsupported");
        File.WriteAllText(Path.Combine(directory, HfTokenizer.TokenizerFile), "{\"version\": \"1.0\", \"model\": {\"type\": \"" + type + "\", \"vocab\": {\"a\": 0}}}");
        var error = Assert.Throws<MeshException>(() => TokenizerLoader.Load(directory, 100));
        Assert.Equal(MeshErrorCode.InvalidTokenizer, error.Code);
        Assert.Contains(type, error.Message);
        Assert.Contains("BPE", error.Message);
    }

    [Fact]
    public void MalformedTokenizerJsonIsInvalidTokenizer()
    {
        var directory = TestModels.NewTempDirectory("tok-bad");
        File.WriteAllText(Path.Combine(directory, HfTokenizer.TokenizerFile), "{ not json");
        Assert.Equal(MeshErrorCode.InvalidTokenizer, Assert.Throws<MeshException>(() => TokenizerLoader.Load(directory, 100)).Code);
    }

    [Fact]
    public void LoaderPicksByFilesAndChecksTheModelsVocabulary()
    {
        var llama2cDirectory = TestModels.NewTempDirectory("tok-bin");
        File.Copy(TestModels.Stories260KTokenizer, Path.Combine(llama2cDirectory, TokenizerLoader.Llama2cFile));
        Assert.IsType<Llama2cTokenizer>(TokenizerLoader.Load(llama2cDirectory, 512));
        Assert.Equal(MeshErrorCode.TokenizerMismatch, Assert.Throws<MeshException>(() => TokenizerLoader.Load(llama2cDirectory, 600)).Code);

        var hfDirectory = Tok512JsonDirectory.Value;
        using (var padded = Assert.IsType<HfTokenizer>(TokenizerLoader.Load(hfDirectory, 576)))
            Assert.Equal(512, padded.VocabSize);
        var larger = Assert.Throws<MeshException>(() => TokenizerLoader.Load(hfDirectory, 500));
        Assert.Equal(MeshErrorCode.TokenizerMismatch, larger.Code);
        Assert.Contains("512", larger.Message);

        Assert.Equal(MeshErrorCode.InvalidTokenizer, Assert.Throws<MeshException>(() => TokenizerLoader.Load(TestModels.NewTempDirectory("tok-none"), 512)).Code);
    }
}
