using System.Collections.Frozen;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> (with <c>tokenizer_config.json</c> and <c>generation_config.json</c> when
/// present), encoded by Hugging Face's own Rust tokenizers through Tokenizers.DotNet, so ids match the model's
/// exactly. Two BPE styles are supported: SentencePiece-style with byte fallback (Llama 2, Mistral, TinyLlama)
/// and byte-level (GPT-2, Llama 3, Qwen). Per-token bytes for streaming are worked out here from the vocabulary,
/// so a character split over tokens is printed only when complete.
/// </summary>
public sealed class HfTokenizer : ITextTokenizer, IDisposable
{
    public const string TokenizerFile = "tokenizer.json";
    public const string ConfigFile = "tokenizer_config.json";
    public const string GenerationConfigFile = "generation_config.json";

    private static readonly byte[][] ByteLevelChars = ByteLevelTable();
    private static readonly JsonSerializerOptions RawJson = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Tokenizers.DotNet.Tokenizer _native;
    private readonly byte[][] _bytes;
    private readonly bool[] _special;
    private readonly bool _sentencePiece;
    private readonly Dictionary<string, int> _ids;

    private HfTokenizer(Tokenizers.DotNet.Tokenizer native, byte[][] bytes, bool[] special, bool sentencePiece, Dictionary<string, int> ids)
    {
        _native = native;
        _bytes = bytes;
        _special = special;
        _sentencePiece = sentencePiece;
        _ids = ids;
        EosIds = FrozenSet<int>.Empty;
    }

    public int VocabSize => _bytes.Length;
    public int? BosId { get; private init; }
    public IReadOnlySet<int> EosIds { get; private init; }
    public bool AddsBos { get; private init; }
    public string? BosToken { get; private init; }
    public string? EosToken { get; private init; }
    public string? ChatTemplateSource { get; private init; }

    /// <summary>Whether pieces are SentencePiece-style (<c>▁</c> for space, <c>&lt;0xNN&gt;</c> byte fallback) rather than byte-level.</summary>
    public bool IsSentencePiece => _sentencePiece;

    /// <summary>Loads <c>tokenizer.json</c> from <paramref name="directory"/>, with the two config files beside it when present.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidTokenizer"/> for a missing or malformed file, or a model type other than BPE.</exception>
    public static HfTokenizer Load(string directory)
    {
        var path = Path.Combine(directory, TokenizerFile);
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} does not exist");
        var json = ReadJson(path) as JsonObject ?? throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} is not a JSON object");
        var config = File.Exists(Path.Combine(directory, ConfigFile)) ? ReadJson(Path.Combine(directory, ConfigFile)) as JsonObject : null;
        var generation = File.Exists(Path.Combine(directory, GenerationConfigFile)) ? ReadJson(Path.Combine(directory, GenerationConfigFile)) as JsonObject : null;

        var model = json["model"] as JsonObject ?? throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} has no model");
        var type = Text(model["type"]) ?? (model["merges"] is not null ? "BPE" : null);
        if (type != "BPE")
            throw new MeshException(MeshErrorCode.InvalidTokenizer,
                $"{path} is a {type ?? "untyped"} tokenizer; supported are BPE tokenizers, SentencePiece-style with byte fallback (Llama 2, Mistral) or byte-level (GPT-2, Llama 3, Qwen)");
        var sentencePiece = IsSentencePieceStyle(json, model);
        if (!sentencePiece && !Mentions(json["decoder"], "ByteLevel") && !Mentions(json["pre_tokenizer"], "ByteLevel"))
            throw new MeshException(MeshErrorCode.InvalidTokenizer,
                $"{path} is a BPE tokenizer neither SentencePiece-style (▁ and byte fallback) nor byte-level; supported are those two");

        var pieces = new Dictionary<int, (string Text, bool Added, bool Special)>();
        if (model["vocab"] is not JsonObject vocab)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} has no model.vocab");
        foreach (var (piece, id) in vocab) pieces[Id(id, path)] = (piece, false, false);
        if (json["added_tokens"] is JsonArray added)
            foreach (var token in added.OfType<JsonObject>())
                pieces[Id(token["id"], path)] = (Text(token["content"]) ?? "", true, token["special"]?.GetValue<bool>() ?? false);
        if (pieces.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} has an empty vocabulary");
        var size = pieces.Keys.Max() + 1;
        var bytes = new byte[size][];
        var special = new bool[size];
        var ids = new Dictionary<string, int>(pieces.Count, StringComparer.Ordinal);
        for (var id = 0; id < size; id++)
        {
            if (!pieces.TryGetValue(id, out var piece))
            {
                bytes[id] = [];
                continue;
            }
            ids.TryAdd(piece.Text, id);
            special[id] = piece.Special;
            bytes[id] = piece.Special ? [] : piece.Added ? Encoding.UTF8.GetBytes(piece.Text) : sentencePiece ? SentencePieceBytes(piece.Text) : ByteLevelBytes(piece.Text);
        }

        int? Lookup(string? token) => token is not null && ids.TryGetValue(token, out var id) ? id : null;
        var bosToken = Text(config?["bos_token"]);
        var eosToken = Text(config?["eos_token"]);
        var bosId = IdOrNull(generation?["bos_token_id"]) ?? Lookup(bosToken);
        var eosIds = new HashSet<int>();
        switch (generation?["eos_token_id"])
        {
            case JsonArray list:
                foreach (var id in list) eosIds.Add(Id(id, GenerationConfigFile));
                break;
            case JsonValue one:
                eosIds.Add(Id(one, GenerationConfigFile));
                break;
        }
        if (Lookup(eosToken) is { } eosId) eosIds.Add(eosId);
        if (eosIds.Any(id => id >= size || id < 0))
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{directory}: an EOS id of {string.Join(", ", eosIds)} is outside the vocabulary of {size}");
        var addsBos = config?["add_bos_token"] is JsonValue addBos ? addBos.GetValue<bool>() : PostProcessorAddsBos(json, bosToken);

        var native = CreateNative(json, path);
        return new HfTokenizer(native, bytes, special, sentencePiece, ids)
        {
            BosId = bosId,
            EosIds = eosIds.ToFrozenSet(),
            AddsBos = addsBos && bosId is not null,
            BosToken = bosToken ?? (bosId is { } b && special[b] ? pieces[b].Text : null),
            EosToken = eosToken,
            ChatTemplateSource = ChatTemplateOf(config?["chat_template"]),
        };
    }

    public bool IsEndOfText(int token) => EosIds.Contains(token);

    /// <summary>Encodes as Hugging Face does; as there, the text of an added token in <paramref name="text"/> becomes that token.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos) => EncodeWithSpecialTokens(text, addBos);

    public IReadOnlyList<int> EncodeWithSpecialTokens(string text, bool addBos)
    {
        var tokens = new List<int>(text.Length / 3 + 2);
        if (addBos && BosId is { } bos) tokens.Add(bos);
        if (text.Length == 0) return tokens;
        uint[] ids;
        try
        {
            ids = _native.Encode(text);
        }
        catch (Tokenizers.DotNet.TokenizerException e)
        {
            throw new MeshException(MeshErrorCode.InvalidArgument, $"the tokenizer could not encode the text: {e.Message}", e);
        }
        foreach (var id in ids) tokens.Add((int)id);
        return tokens;
    }

    public int? TokenId(string token) => _ids.TryGetValue(token, out var id) ? id : null;

    public ReadOnlySpan<byte> DecodeBytes(int previous, int token)
    {
        if ((uint)token >= (uint)_bytes.Length)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"token id {token} is outside the vocabulary of {_bytes.Length}");
        var bytes = _bytes[token].AsSpan();
        // SentencePiece's decoder strips the dummy-prefix space of the first word (HF's Strip/Metaspace decoders; llama2.c after BOS).
        if (_sentencePiece && bytes.Length > 0 && bytes[0] == (byte)' ' && (previous < 0 || (uint)previous < (uint)_special.Length && _special[previous]))
            bytes = bytes[1..];
        return bytes;
    }

    public string Decode(IReadOnlyList<int> tokens)
    {
        var decoder = new StreamingTextDecoder();
        var builder = new StringBuilder();
        for (var i = 0; i < tokens.Count; i++)
            builder.Append(decoder.Append(DecodeBytes(i == 0 ? -1 : tokens[i - 1], tokens[i])));
        return builder.ToString();
    }

    public void Dispose() => _native.Dispose();

    private static Tokenizers.DotNet.Tokenizer CreateNative(JsonObject json, string path)
    {
        // BOS is added here (add_bos_token decides), never by the post-processor; truncation and padding do not apply to generation.
        var copy = (JsonObject)json.DeepClone();
        copy["post_processor"] = null;
        copy["truncation"] = null;
        copy["padding"] = null;
        var temp = Path.Combine(Path.GetTempPath(), $"inferencemesh-tokenizer-{Guid.NewGuid():N}.json");
        try
        {
            File.WriteAllText(temp, copy.ToJsonString());
            return new Tokenizers.DotNet.Tokenizer(temp);
        }
        catch (Tokenizers.DotNet.TokenizerException e)
        {
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} could not be loaded by Hugging Face tokenizers: {e.Message}", e);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new MeshException(MeshErrorCode.InvalidTokenizer,
                $"{path} needs Hugging Face tokenizers' native library, which did not load on this platform (only linux-x64's is shipped): {e.Message}", e);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    private static JsonNode? ReadJson(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{path} is not valid JSON: {e.Message}", e);
        }
    }

    private static bool IsSentencePieceStyle(JsonObject json, JsonObject model) =>
        model["byte_fallback"]?.GetValue<bool>() == true || Mentions(json["decoder"], "ByteFallback") || Mentions(json["decoder"], "Metaspace")
        || Mentions(json["pre_tokenizer"], "Metaspace") || Mentions(json["normalizer"], "▁");

    private static bool Mentions(JsonNode? node, string text) => node is not null && node.ToJsonString(RawJson).Contains(text, StringComparison.Ordinal);

    /// <summary>Whether the post-processor (a TemplateProcessing) puts the BOS token first: how tokenizers without add_bos_token add it.</summary>
    private static bool PostProcessorAddsBos(JsonObject json, string? bosToken)
    {
        if (bosToken is null || json["post_processor"] is not JsonObject processor) return false;
        var processors = processor["processors"] is JsonArray list ? list.OfType<JsonObject>() : [processor];
        foreach (var one in processors)
            if (one["single"] is JsonArray single && single.FirstOrDefault() is JsonObject first && first["SpecialToken"] is JsonObject token)
                return Text(token["id"]) == bosToken;
        return false;
    }

    private static string? ChatTemplateOf(JsonNode? node) => node switch
    {
        JsonValue value => value.GetValue<string>(),
        // A list of named templates: the default one, else the first.
        JsonArray list => list.OfType<JsonObject>().Where(t => Text(t["name"]) == "default").Concat(list.OfType<JsonObject>()).Select(t => Text(t["template"])).FirstOrDefault(),
        _ => null,
    };

    /// <summary>A string, or an added-token object's <c>content</c> (tokenizer_config.json writes bos_token either way).</summary>
    private static string? Text(JsonNode? node) => node switch
    {
        JsonValue value when value.TryGetValue<string>(out var text) => text,
        JsonObject token => Text(token["content"]),
        _ => null,
    };

    private static int Id(JsonNode? node, string file) => node is JsonValue value && value.TryGetValue<int>(out var id) && id >= 0
        ? id
        : throw new MeshException(MeshErrorCode.InvalidTokenizer, $"{file}: {node?.ToJsonString() ?? "null"} is not a token id");

    private static int? IdOrNull(JsonNode? node) => node is JsonValue value && value.TryGetValue<int>(out var id) ? id : null;

    private static byte[] SentencePieceBytes(string piece)
    {
        if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var value))
            return [value];
        return Encoding.UTF8.GetBytes(piece.Replace('▁', ' '));
    }

    private static byte[] ByteLevelBytes(string piece)
    {
        var bytes = new List<byte>(piece.Length);
        foreach (var ch in piece)
            if (ch < ByteLevelChars.Length && ByteLevelChars[ch] is { Length: 1 } one) bytes.Add(one[0]);
            else bytes.AddRange(Encoding.UTF8.GetBytes(ch.ToString()));
        return bytes.ToArray();
    }

    /// <summary>GPT-2's byte-to-character table inverted: printable bytes stand for themselves, the rest for 256 + n in byte order.</summary>
    private static byte[][] ByteLevelTable()
    {
        var table = new byte[324][];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255;
            table[printable ? b : next++] = [(byte)b];
        }
        return table;
    }
}
