using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// The stand-in for a model that came without a tokenizer (an export holding only the graph): generation is driven by
/// token ids, and it knows only which ids end a generation (<c>eos_token_id</c> of the description files). Anything
/// that needs text fails with <see cref="MeshErrorCode.InvalidTokenizer"/> saying to use token ids.
/// </summary>
public sealed class IdsOnlyTokenizer(string directory, int vocab, IReadOnlySet<int> endOfText) : ITextTokenizer
{
    public int VocabSize => vocab;
    public int? BosId => null;
    public IReadOnlySet<int> EosIds => endOfText;
    public bool AddsBos => false;
    public string? BosToken => null;
    public string? EosToken => null;
    public string? ChatTemplateSource => null;

    public bool IsEndOfText(int token) => endOfText.Contains(token);

    public IReadOnlyList<int> Encode(string text, bool addBos) => throw NoText();

    public IReadOnlyList<int> EncodeWithSpecialTokens(string text, bool addBos) => throw NoText();

    public int? TokenId(string token) => null;

    public ReadOnlySpan<byte> DecodeBytes(int previous, int token) => throw NoText();

    public string Decode(IReadOnlyList<int> tokens) => throw NoText();

    private MeshException NoText() => new(MeshErrorCode.InvalidTokenizer,
        $"{directory} has no tokenizer ({HfTokenizer.TokenizerFile} or {TokenizerLoader.Llama2cFile}): drive it with token ids (--ids 1,2,3)");
}
