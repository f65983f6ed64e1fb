using System.Collections.Frozen;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>A conversation encoded for generation: its tokens, the ids that end the reply besides EOS, and the template used (null: plain text).</summary>
public sealed record ChatPrompt(IReadOnlyList<int> Tokens, IReadOnlySet<int> StopIds, ChatTemplate? Template)
{
    /// <summary>
    /// Renders <paramref name="messages"/> with the tokenizer's chat template (or <paramref name="family"/>) and encodes
    /// the special tokens in it; the family's end-of-turn token, where the vocabulary has it, ends the reply. A
    /// tokenizer without a template gets the messages' text joined with line breaks, encoded as a plain prompt.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the model's template is of no known family and none is given, or the messages do not fit the template.</exception>
    public static ChatPrompt Encode(ITextTokenizer tokenizer, IReadOnlyList<ChatTurn> messages, ChatTemplateFamily? family = null)
    {
        var template = ChatTemplate.Resolve(tokenizer, family);
        if (template is null)
        {
            var text = PlainText(messages);
            var plain = tokenizer.Encode(text, tokenizer.AddsBos || text.Length == 0);
            if (plain.Count == 0)
                throw new MeshException(MeshErrorCode.InvalidArgument, "the messages are empty and the tokenizer has no BOS token to start from");
            return new ChatPrompt(plain, FrozenSet<int>.Empty, null);
        }
        var tokens = tokenizer.EncodeWithSpecialTokens(template.Render(messages), addBos: false);
        var stops = tokenizer.TokenId(template.EndOfTurnToken) is { } endOfTurn ? new[] { endOfTurn }.ToFrozenSet() : FrozenSet<int>.Empty;
        return new ChatPrompt(tokens, stops, template);
    }

    /// <summary>The text a model without a chat template continues: the messages' non-empty contents joined with line breaks.</summary>
    public static string PlainText(IEnumerable<ChatTurn> messages) => string.Join("\n", messages.Select(m => m.Content).Where(t => t.Length > 0));
}
