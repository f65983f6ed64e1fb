using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// Opens the tokenizer of a model or split directory by the files in it: <c>tokenizer.json</c> (Hugging Face,
/// with <c>tokenizer_config.json</c> and <c>generation_config.json</c> when present) or <c>tokenizer.bin</c> (llama2.c).
/// </summary>
public static class TokenizerLoader
{
    /// <summary>llama2.c's tokenizer file name in a model directory.</summary>
    public const string Llama2cFile = "tokenizer.bin";

    /// <summary>The files that travel with a model's tokenizer when it is split or copied.</summary>
    public static readonly IReadOnlyList<string> Files = [HfTokenizer.TokenizerFile, HfTokenizer.ConfigFile, HfTokenizer.GenerationConfigFile, Llama2cFile];

    /// <param name="tokenizerFile">The file the manifest or model description names; when null (or absent), <c>tokenizer.json</c> is preferred to <c>tokenizer.bin</c>.</param>
    /// <param name="modelVocab">The model's vocabulary: a llama2.c tokenizer must match it exactly; a Hugging Face tokenizer may be smaller (embeddings are often padded), never larger.</param>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidTokenizer"/> when there is no tokenizer or it cannot be read;
    /// <see cref="MeshErrorCode.TokenizerMismatch"/> when it does not fit the model's vocabulary.</exception>
    public static ITextTokenizer Load(string directory, int? modelVocab, string? tokenizerFile = null)
    {
        var file = tokenizerFile is not null && File.Exists(Path.Combine(directory, tokenizerFile)) ? tokenizerFile
            : File.Exists(Path.Combine(directory, HfTokenizer.TokenizerFile)) ? HfTokenizer.TokenizerFile
            : File.Exists(Path.Combine(directory, Llama2cFile)) ? Llama2cFile
            : throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{directory} has no {HfTokenizer.TokenizerFile} or {Llama2cFile}");
        if (Path.GetExtension(file) != ".json")
            return Llama2cTokenizer.Load(Path.Combine(directory, file), modelVocab);
        if (file != HfTokenizer.TokenizerFile)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{directory}: a Hugging Face tokenizer must be named {HfTokenizer.TokenizerFile}, not {file}");
        var tokenizer = HfTokenizer.Load(directory);
        if (modelVocab is { } vocab && tokenizer.VocabSize > vocab)
        {
            tokenizer.Dispose();
            throw new MeshException(MeshErrorCode.TokenizerMismatch, $"{Path.Combine(directory, file)} has {tokenizer.VocabSize} tokens but the model's vocabulary is {vocab}");
        }
        return tokenizer;
    }

    /// <summary>
    /// Like <see cref="Load"/>, but a directory without any tokenizer file (a foreign export holding only the graph) gets an
    /// <see cref="IdsOnlyTokenizer"/>, so the model can still be driven by token ids.
    /// </summary>
    public static ITextTokenizer LoadOrIdsOnly(string directory, int modelVocab, string? tokenizerFile = null) =>
        new[] { tokenizerFile, HfTokenizer.TokenizerFile, Llama2cFile }.Any(f => f is not null && File.Exists(Path.Combine(directory, f)))
            ? Load(directory, modelVocab, tokenizerFile)
            : new IdsOnlyTokenizer(directory, modelVocab, ForeignModel.EndOfTextIds(directory));
}
