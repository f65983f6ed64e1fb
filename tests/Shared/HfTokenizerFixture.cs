using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// Writes Hugging Face tokenizer files for tests: <see cref="WriteFromLlama2c"/> turns a llama2.c tokenizer
/// (<c>tok512.bin</c>) into the equivalent SentencePiece-style <c>tokenizer.json</c> and <c>tokenizer_config.json</c>,
/// laid out as Llama 2's are, so that Hugging Face's BPE gives exactly the ids llama2.c's encoder gives.
/// </summary>
public static class HfTokenizerFixture
{
    /// <summary>
    /// Writes <c>tokenizer.json</c> and <c>tokenizer_config.json</c> (and, with <paramref name="chatTemplate"/>, that
    /// template in the config) for the llama2.c tokenizer at <paramref name="llama2cTokenizerPath"/> into <paramref name="outDir"/>.
    /// </summary>
    /// <remarks>
    /// llama2.c encodes as SentencePiece does: a dummy-prefix space, one piece per character (else its UTF-8 bytes as
    /// <c>&lt;0xNN&gt;</c> pieces), then repeatedly the adjacent pair whose concatenation is the piece of highest score.
    /// Hugging Face's BPE merges the adjacent pair of lowest merge rank instead, so every split of every piece into two
    /// pieces becomes a merge, ranked by the merged piece's score (highest first; ties by id): both then take the same
    /// merges in the same order. Pieces write a space as <c>▁</c>; the normalizer prepends <c>▁</c> and replaces spaces,
    /// as Llama 2's tokenizer.json does; ids 0, 1, 2 are <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>.
    /// </remarks>
    public static void WriteFromLlama2c(string llama2cTokenizerPath, string outDir, string? chatTemplate = null)
    {
        var (pieces, scores) = ReadLlama2c(llama2cTokenizerPath);
        string[] specials = ["<unk>", "<s>", "</s>"];
        var texts = new string[pieces.Length];
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var id = 0; id < pieces.Length; id++)
        {
            texts[id] = id < specials.Length ? specials[id] : Encoding.UTF8.GetString(pieces[id]).Replace(' ', '▁');
            if (!ids.TryAdd(texts[id], id))
                throw new InvalidDataException($"{llama2cTokenizerPath}: piece {id} repeats piece {ids[texts[id]]} ({texts[id]})");
        }

        var merges = new List<(float Score, int Id, int Split, string Left, string Right)>();
        for (var id = specials.Length + 256; id < texts.Length; id++)
        {
            var text = texts[id];
            for (var split = 1; split < text.Length; split++)
            {
                if (char.IsLowSurrogate(text[split])) continue;
                var left = text[..split];
                var right = text[split..];
                if (ids.TryGetValue(left, out var l) && l >= specials.Length && ids.TryGetValue(right, out var r) && r >= specials.Length)
                    merges.Add((scores[id], id, split, left, right));
            }
        }
        merges.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Id != b.Id ? a.Id.CompareTo(b.Id) : a.Split.CompareTo(b.Split));

        var vocab = new JsonObject();
        for (var id = 0; id < texts.Length; id++) vocab[texts[id]] = id;
        var added = new JsonArray();
        for (var id = 0; id < specials.Length; id++)
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = specials[id], ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<s>", ["type_id"] = 1 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    ["<s>"] = new JsonObject { ["id"] = "<s>", ["ids"] = new JsonArray(1), ["tokens"] = new JsonArray("<s>") },
                },
            },
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = "<unk>",
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true,
                ["byte_fallback"] = true,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray([.. merges.Select(m => (JsonNode)$"{m.Left} {m.Right}")]),
            },
        };
        var config = new JsonObject
        {
            ["add_bos_token"] = true,
            ["add_eos_token"] = false,
            ["bos_token"] = "<s>",
            ["eos_token"] = "</s>",
            ["unk_token"] = "<unk>",
            ["clean_up_tokenization_spaces"] = false,
            ["legacy"] = true,
            ["tokenizer_class"] = "LlamaTokenizer",
        };
        if (chatTemplate is not null) config["chat_template"] = chatTemplate;
        Directory.CreateDirectory(outDir);
        var options = new System.Text.Json.JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(outDir, "tokenizer.json"), tokenizer.ToJsonString(options));
        File.WriteAllText(Path.Combine(outDir, "tokenizer_config.json"), config.ToJsonString(options));
    }

    private static (byte[][] Pieces, float[] Scores) ReadLlama2c(string path)
    {
        var data = File.ReadAllBytes(path);
        var pieces = new List<byte[]>();
        var scores = new List<float>();
        for (var offset = 4; offset < data.Length;)
        {
            scores.Add(BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(offset)));
            var length = BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(offset + 4));
            pieces.Add(data.AsSpan(offset + 8, length).ToArray());
            offset += 8 + length;
        }
        return ([.. pieces], [.. scores]);
    }
}
