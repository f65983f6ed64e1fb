namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// What generation needs of a tokenizer, whichever file it came from: <see cref="Llama2cTokenizer"/>
/// (llama2.c's <c>tokenizer.bin</c>) or <see cref="HfTokenizer"/> (Hugging Face's <c>tokenizer.json</c>).
/// <see cref="TokenizerLoader"/> picks one by the files in a model directory.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Ids the tokenizer can produce (highest id + 1); a model's embedding may be larger, never smaller.</summary>
    int VocabSize { get; }

    /// <summary>The beginning-of-sequence id, or null when the tokenizer has none (GPT-2, Qwen).</summary>
    int? BosId { get; }

    /// <summary>Ids that end a generation (a model may have several: Llama 3 instruct ends at <c>&lt;|end_of_text|&gt;</c> and <c>&lt;|eot_id|&gt;</c>).</summary>
    IReadOnlySet<int> EosIds { get; }

    /// <summary>Whether a prompt starts with <see cref="BosId"/> (tokenizer_config.json's <c>add_bos_token</c>).</summary>
    bool AddsBos { get; }

    /// <summary>The text of the BOS and EOS tokens, which chat templates write (<c>bos_token</c>, <c>eos_token</c>).</summary>
    string? BosToken { get; }

    string? EosToken { get; }

    /// <summary>The Jinja chat template of tokenizer_config.json, or null when the model has none.</summary>
    string? ChatTemplateSource { get; }

    /// <summary>Whether generation stops when the model emits <paramref name="token"/>.</summary>
    bool IsEndOfText(int token);

    /// <summary>Encodes text as the model's tokenizer does, with <see cref="BosId"/> first when <paramref name="addBos"/> (and the tokenizer has one).</summary>
    IReadOnlyList<int> Encode(string text, bool addBos);

    /// <summary>Encodes text as a prompt is encoded: BOS first when the tokenizer adds it (<see cref="AddsBos"/>).</summary>
    IReadOnlyList<int> Encode(string text) => Encode(text, AddsBos);

    /// <summary>Encodes text in which the special tokens' text (<c>&lt;s&gt;</c>, <c>&lt;|im_start|&gt;</c>…) stands for those tokens: for rendered chat templates.</summary>
    IReadOnlyList<int> EncodeWithSpecialTokens(string text, bool addBos);

    /// <summary>The id of a token given by its exact text (a special token's content), or null.</summary>
    int? TokenId(string token);

    /// <summary>
    /// The bytes <paramref name="token"/> prints after <paramref name="previous"/> (-1 at the start): possibly part
    /// of a UTF-8 character, so streams go through <see cref="StreamingTextDecoder"/>. Special tokens print nothing
    /// (llama2.c's print their piece, as llama2.c does); a SentencePiece word's leading space is dropped right after BOS.
    /// </summary>
    ReadOnlySpan<byte> DecodeBytes(int previous, int token);

    /// <summary>Decodes a sequence to text exactly as streaming <see cref="DecodeBytes"/> through <see cref="StreamingTextDecoder"/> prints it (a leading BOS prints nothing).</summary>
    string Decode(IReadOnlyList<int> tokens);
}
