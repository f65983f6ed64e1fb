using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// The SentencePiece-style BPE tokenizer of llama2.c's <c>tokenizer.bin</c>/<c>tok512.bin</c> files:
/// BOS, a dummy-prefix space, per-character pieces with byte fallback (<c>&lt;0xNN&gt;</c> = id byte + 3),
/// then greedy merges of the adjacent pair whose concatenation has the highest score.
/// </summary>
public sealed class Llama2cTokenizer : ITextTokenizer
{
    private static readonly IReadOnlySet<int> EosSet = new[] { Eos }.ToFrozenSet();

    public const int Bos = 1;
    public const int Eos = 2;
    private const int ByteFallbackOffset = 3;

    private readonly byte[][] _pieces;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _idsByPiece;
    private readonly byte[]?[] _rawBytes;

    private Llama2cTokenizer(byte[][] pieces, float[] scores)
    {
        _pieces = pieces;
        _scores = scores;
        _idsByPiece = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        _rawBytes = new byte[]?[pieces.Length];
        for (var id = 0; id < pieces.Length; id++)
        {
            // Latin-1 maps each byte to one char, so byte strings compare exactly even where they are not valid UTF-8.
            _idsByPiece.TryAdd(Encoding.Latin1.GetString(pieces[id]), id);
            var text = Encoding.ASCII.GetString(pieces[id]);
            if (text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
                && byte.TryParse(text.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var value))
                _rawBytes[id] = [value];
        }
    }

    public int VocabSize => _pieces.Length;

    public int? BosId => Bos;

    public IReadOnlySet<int> EosIds => EosSet;

    public bool AddsBos => true;

    public string? BosToken => "<s>";

    public string? EosToken => "</s>";

    /// <summary>llama2.c models have no chat template.</summary>
    public string? ChatTemplateSource => null;

    /// <summary>llama2.c stops at BOS as well as EOS.</summary>
    public bool IsEndOfText(int token) => token is Bos or Eos;

    IReadOnlyList<int> ITextTokenizer.Encode(string text, bool addBos) => Encode(text, addBos);

    /// <summary>Encodes with <c>&lt;s&gt;</c> and <c>&lt;/s&gt;</c> in the text standing for BOS and EOS; the text between them is encoded as by <see cref="Encode"/>.</summary>
    public IReadOnlyList<int> EncodeWithSpecialTokens(string text, bool addBos)
    {
        var tokens = new List<int>();
        if (addBos) tokens.Add(Bos);
        var start = 0;
        while (start <= text.Length)
        {
            var bos = text.IndexOf("<s>", start, StringComparison.Ordinal);
            var eos = text.IndexOf("</s>", start, StringComparison.Ordinal);
            var next = bos < 0 ? eos : eos < 0 ? bos : Math.Min(bos, eos);
            var end = next < 0 ? text.Length : next;
            if (end > start) tokens.AddRange(Encode(text[start..end], bos: false));
            if (next < 0) break;
            tokens.Add(next == bos ? Bos : Eos);
            start = next + (next == bos ? 3 : 4);
        }
        return tokens;
    }

    public int? TokenId(string token) => token switch
    {
        "<unk>" => 0,
        "<s>" => Bos,
        "</s>" => Eos,
        _ => _idsByPiece.TryGetValue(Encoding.Latin1.GetString(Encoding.UTF8.GetBytes(token)), out var id) ? id : null,
    };

    public ReadOnlySpan<byte> Piece(int id) => _pieces[id];

    /// <summary>Reads a llama2.c tokenizer file; with <paramref name="expectedVocab"/>, a file with another vocabulary size is refused.</summary>
    public static Llama2cTokenizer Load(string path, int? expectedVocab = null)
    {
        if (!File.Exists(path))
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} does not exist");
        var data = File.ReadAllBytes(path);
        var pieceList = new List<byte[]>();
        var scoreList = new List<float>();
        var offset = 4;
        if (data.Length < 4)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} is too short to be a llama2.c tokenizer");
        var maxLength = BinaryPrimitives.ReadInt32LittleEndian(data);
        if (maxLength <= 0 || maxLength > 1024)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} declares max token length {maxLength}: not a llama2.c tokenizer");
        while (offset < data.Length)
        {
            if (data.Length - offset < 8)
                throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} is truncated at byte {offset}");
            var score = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(offset));
            var length = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(offset + 4));
            offset += 8;
            if (length < 0 || length > maxLength || length > data.Length - offset)
                throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} has a piece of length {length} at byte {offset - 4}: truncated or not a llama2.c tokenizer");
            pieceList.Add(data.AsSpan(offset, length).ToArray());
            scoreList.Add(score);
            offset += length;
        }
        if (pieceList.Count < ByteFallbackOffset + 256)
            throw new MeshException(MeshErrorCode.InvalidTokenizer, $"tokenizer {path} has {pieceList.Count} pieces; a llama2.c tokenizer has at least 259");
        if (expectedVocab is { } vocab && vocab != pieceList.Count)
            throw new MeshException(MeshErrorCode.TokenizerMismatch, $"tokenizer {path} has {pieceList.Count} pieces but the model's vocabulary is {vocab}");
        return new Llama2cTokenizer(pieceList.ToArray(), scoreList.ToArray());
    }

    /// <summary>Encodes as llama2.c does: optional BOS, a dummy-prefix " " for non-empty text, characters or byte fallback, then merges.</summary>
    public List<int> Encode(string text, bool bos = true, bool eos = false)
    {
        var tokens = new List<int>(text.Length + 3);
        if (bos) tokens.Add(Bos);
        if (text.Length > 0 && _idsByPiece.TryGetValue(" ", out var space)) tokens.Add(space);

        var utf8 = Encoding.UTF8.GetBytes(text);
        for (var i = 0; i < utf8.Length;)
        {
            var length = Utf8SequenceLength(utf8, i);
            if (_idsByPiece.TryGetValue(Encoding.Latin1.GetString(utf8, i, length), out var id))
                tokens.Add(id);
            else
                for (var b = 0; b < length; b++) tokens.Add(utf8[i + b] + ByteFallbackOffset);
            i += length;
        }

        var start = bos ? 1 : 0;
        while (true)
        {
            var bestScore = float.NegativeInfinity;
            var bestId = -1;
            var bestIndex = -1;
            for (var i = start; i < tokens.Count - 1; i++)
            {
                var merged = Encoding.Latin1.GetString(_pieces[tokens[i]]) + Encoding.Latin1.GetString(_pieces[tokens[i + 1]]);
                if (_idsByPiece.TryGetValue(merged, out var id) && _scores[id] > bestScore)
                {
                    bestScore = _scores[id];
                    bestId = id;
                    bestIndex = i;
                }
            }
            if (bestIndex < 0) break;
            tokens[bestIndex] = bestId;
            tokens.RemoveAt(bestIndex + 1);
        }
        if (eos) tokens.Add(Eos);
        return tokens;
    }

    /// <summary>The bytes <paramref name="token"/> prints after <paramref name="previous"/>: raw byte for <c>&lt;0xNN&gt;</c>, leading space dropped right after BOS.</summary>
    public ReadOnlySpan<byte> DecodeBytes(int previous, int token)
    {
        if ((uint)token >= (uint)_pieces.Length)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"token id {token} is outside the vocabulary of {_pieces.Length}");
        if (_rawBytes[token] is { } raw) return raw;
        var piece = _pieces[token].AsSpan();
        if (previous == Bos && piece.Length > 0 && piece[0] == (byte)' ') piece = piece[1..];
        return piece;
    }

    /// <summary>Decodes a whole sequence (starting after BOS if present) to text.</summary>
    public string Decode(IReadOnlyList<int> tokens)
    {
        var decoder = new StreamingTextDecoder();
        var builder = new StringBuilder();
        for (var i = 0; i < tokens.Count; i++)
        {
            if (i == 0 && tokens[0] == Bos) continue;
            builder.Append(decoder.Append(DecodeBytes(i == 0 ? Bos : tokens[i - 1], tokens[i])));
        }
        return builder.ToString();
    }

    private static int Utf8SequenceLength(byte[] utf8, int index)
    {
        var lead = utf8[index];
        var length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        return Math.Min(length, utf8.Length - index);
    }
}
