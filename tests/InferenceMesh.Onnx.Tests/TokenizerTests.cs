using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Onnx.Tests;

public sealed class TokenizerTests
{
    private static Llama2cTokenizer Tok512 => Llama2cTokenizer.Load(TestModels.Stories260KTokenizer, 512);

    // Worked out from tok512.bin: " Once" is piece 403, " upon" 407, " a" 261, " time" 378, " Lily" 317;
    // "é" has its own piece 485 (bytes C3 A9), reached after the lone dummy-prefix " " (410) fails to merge with it.
    [Theory]
    [InlineData("Once upon a time", new[] { 1, 403, 407, 261, 378 })]
    [InlineData("Lily", new[] { 1, 317 })]
    [InlineData("hello world", new[] { 1, 281, 306, 414, 263, 304, 341 })]
    [InlineData("é!", new[] { 1, 410, 485, 443 })]
    [InlineData("", new[] { 1 })]
    public void EncodesKnownStringsToTheirIds(string text, int[] expected) => Assert.Equal(expected, Tok512.Encode(text));

    [Fact]
    public void PiecesAreReadInFileOrder()
    {
        var tokenizer = Tok512;
        Assert.Equal(512, tokenizer.VocabSize);
        Assert.Equal("<0x00>"u8.ToArray(), tokenizer.Piece(3).ToArray());
        Assert.Equal(" t"u8.ToArray(), tokenizer.Piece(259).ToArray());
    }

    [Theory]
    [InlineData("Once upon a time, there was a little girl named Lily.")]
    [InlineData("She said, \"I'm sorry!\"\nThe end.")]
    [InlineData("ünïcödé — 日本語 and emoji 🙂 survive through byte fallback")]
    [InlineData("  two leading spaces")]
    public void RoundTripsText(string text)
    {
        var tokenizer = Tok512;
        Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
    }

    [Fact]
    public void CharactersWithoutAPieceFallBackToBytes()
    {
        var ids = Tok512.Encode("日");
        Assert.Equal([1, 410, 0xE6 + 3, 0x97 + 3, 0xA5 + 3], ids);
    }

    [Fact]
    public void LeadingSpaceIsDroppedOnlyRightAfterBos()
    {
        var tokenizer = Tok512;
        Assert.Equal("Lily"u8.ToArray(), tokenizer.DecodeBytes(Llama2cTokenizer.Bos, 317).ToArray());
        Assert.Equal(" Lily"u8.ToArray(), tokenizer.DecodeBytes(403, 317).ToArray());
        Assert.Equal(new byte[] { 0x41 }, tokenizer.DecodeBytes(403, 0x41 + 3).ToArray());
    }

    [Fact]
    public void StreamingDecoderHoldsBackSplitUtf8()
    {
        var decoder = new StreamingTextDecoder();
        Assert.Equal("", decoder.Append([0xE6]));
        Assert.Equal("", decoder.Append([0x97]));
        Assert.Equal("日", decoder.Append([0xA5]));
    }

    [Fact]
    public void MismatchedVocabularyIsRefused()
    {
        var error = Assert.Throws<MeshException>(() => Llama2cTokenizer.Load(TestModels.Stories260KTokenizer, 32000));
        Assert.Equal(MeshErrorCode.TokenizerMismatch, error.Code);
        Assert.Contains("32000", error.Message);
    }

    [Fact]
    public void TruncatedTokenizerIsRefused()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("tok"), "tok.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(TestModels.Stories260KTokenizer)[..3000]);
        Assert.Equal(MeshErrorCode.InvalidTokenizer, Assert.Throws<MeshException>(() => Llama2cTokenizer.Load(path)).Code);
    }

    [Fact]
    public void OutOfRangeIdIsRefused() =>
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => Tok512.DecodeBytes(1, 512).ToArray()).Code);
}
