using System.Text;
using InferenceMesh.Core;

namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>
/// A chat template of a known family, rendered in code as the family's public Jinja template renders it.
/// <see cref="Detect"/> recognises a tokenizer_config.json <c>chat_template</c> by its distinctive markers;
/// <see cref="Resolve"/> applies a <c>--chat-template</c> override. The rendered text holds special tokens'
/// text (BOS included where the template writes it): encode it with <see cref="ITextTokenizer.EncodeWithSpecialTokens"/> and no added BOS.
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>The names <see cref="Parse"/> accepts, as the CLI and error messages write them.</summary>
    public const string FamilyNames = "chatml|llama3|llama2|mistral";

    private ChatTemplate(ChatTemplateFamily family, string bosToken, string eosToken)
    {
        Family = family;
        BosToken = bosToken;
        EosToken = eosToken;
    }

    public ChatTemplateFamily Family { get; }
    public string BosToken { get; }
    public string EosToken { get; }

    /// <summary>The token that ends an assistant turn in this family (generation stops there too): <c>&lt;|im_end|&gt;</c>, <c>&lt;|eot_id|&gt;</c> or EOS.</summary>
    public string EndOfTurnToken => Family switch
    {
        ChatTemplateFamily.ChatMl => "<|im_end|>",
        ChatTemplateFamily.Llama3 => "<|eot_id|>",
        _ => EosToken,
    };

    /// <summary>A template of <paramref name="family"/> writing the given BOS/EOS text; null ones take the family's usual tokens.</summary>
    public static ChatTemplate For(ChatTemplateFamily family, string? bosToken = null, string? eosToken = null) => new(family,
        bosToken ?? (family == ChatTemplateFamily.Llama3 ? "<|begin_of_text|>" : family == ChatTemplateFamily.ChatMl ? "" : "<s>"),
        eosToken ?? (family switch { ChatTemplateFamily.Llama3 => "<|eot_id|>", ChatTemplateFamily.ChatMl => "<|im_end|>", _ => "</s>" }));

    /// <summary>The family of a Jinja chat template by its markers, or null when none is recognised.</summary>
    public static ChatTemplateFamily? Detect(string template) =>
        template.Contains("<|start_header_id|>", StringComparison.Ordinal) ? ChatTemplateFamily.Llama3
        : template.Contains("<|im_start|>", StringComparison.Ordinal) ? ChatTemplateFamily.ChatMl
        : template.Contains("<<SYS>>", StringComparison.Ordinal) ? ChatTemplateFamily.Llama2
        : template.Contains("[INST]", StringComparison.Ordinal) ? ChatTemplateFamily.Mistral
        : null;

    /// <summary>Parses a family name: chatml, llama3, llama2 or mistral (any case).</summary>
    public static ChatTemplateFamily Parse(string name) => name.ToLowerInvariant() switch
    {
        "chatml" => ChatTemplateFamily.ChatMl,
        "llama3" => ChatTemplateFamily.Llama3,
        "llama2" => ChatTemplateFamily.Llama2,
        "mistral" => ChatTemplateFamily.Mistral,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown chat template '{name}'; expected {FamilyNames}"),
    };

    /// <summary>
    /// The template to use with <paramref name="tokenizer"/>: <paramref name="family"/> when given, else the family of
    /// its chat_template; null when the model has no chat template (a completion model such as stories260K).
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the model's template is of no known family.</exception>
    public static ChatTemplate? Resolve(ITextTokenizer tokenizer, ChatTemplateFamily? family = null)
    {
        if (family is null && tokenizer.ChatTemplateSource is null) return null;
        var chosen = family ?? Detect(tokenizer.ChatTemplateSource!) ?? throw new MeshException(MeshErrorCode.InvalidArgument,
            $"the model's chat template is of no family rendered here; choose one with --chat-template {FamilyNames}");
        return For(chosen, tokenizer.BosToken, tokenizer.EosToken);
    }

    /// <summary>Renders <paramref name="messages"/>; with <paramref name="addGenerationPrompt"/>, ends where the assistant's reply begins.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for an unknown role, or where the family needs user and assistant turns to alternate.</exception>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt = true)
    {
        if (messages.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "a chat needs at least one message");
        foreach (var message in messages)
            if (message.Role is not (ChatTurn.SystemRole or ChatTurn.UserRole or ChatTurn.AssistantRole))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown chat role '{message.Role}'; expected system, user or assistant");
        return Family switch
        {
            ChatTemplateFamily.ChatMl => RenderChatMl(messages, addGenerationPrompt),
            ChatTemplateFamily.Llama3 => RenderLlama3(messages, addGenerationPrompt),
            ChatTemplateFamily.Llama2 => RenderInst(messages, llama2: true),
            _ => RenderInst(messages, llama2: false),
        };
    }

    private string RenderChatMl(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder(BosToken);
        foreach (var message in messages)
            text.Append("<|im_start|>").Append(message.Role).Append('\n').Append(message.Content).Append("<|im_end|>\n");
        if (addGenerationPrompt) text.Append("<|im_start|>assistant\n");
        return text.ToString();
    }

    private string RenderLlama3(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt)
    {
        var text = new StringBuilder(BosToken);
        foreach (var message in messages)
            text.Append("<|start_header_id|>").Append(message.Role).Append("<|end_header_id|>\n\n").Append(message.Content.Trim()).Append("<|eot_id|>");
        if (addGenerationPrompt) text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n");
        return text.ToString();
    }

    /// <summary>
    /// Llama 2: each user turn <c>bos [INST] content [/INST]</c>, each assistant turn <c> content eos</c>, the system
    /// message inside the first user turn between <c>&lt;&lt;SYS&gt;&gt;</c> markers. Mistral: <c>bos</c> once, then
    /// <c>[INST] content [/INST]</c> and <c>content eos</c>; a system message goes before the first user message, separated by a blank line.
    /// Both end after <c>[/INST]</c>, where the reply begins (their templates have no generation prompt).
    /// </summary>
    private string RenderInst(IReadOnlyList<ChatTurn> messages, bool llama2)
    {
        var system = messages[0].Role == ChatTurn.SystemRole ? messages[0].Content : null;
        var turns = system is null ? messages : messages.Skip(1).ToList();
        var text = new StringBuilder(llama2 ? "" : BosToken);
        for (var i = 0; i < turns.Count; i++)
        {
            var expected = i % 2 == 0 ? ChatTurn.UserRole : ChatTurn.AssistantRole;
            if (turns[i].Role != expected)
                throw new MeshException(MeshErrorCode.InvalidArgument,
                    $"the {Family} chat template needs user and assistant messages to alternate, starting with user (after an optional system message); message {i + (system is null ? 1 : 2)} is {turns[i].Role}");
            var content = turns[i].Content;
            if (i == 0 && system is not null)
                content = llama2 ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{content}" : $"{system}\n\n{content}";
            if (expected == ChatTurn.UserRole)
                text.Append(llama2 ? BosToken : "").Append("[INST] ").Append(llama2 ? content.Trim() : content).Append(" [/INST]");
            else
                text.Append(llama2 ? " " + content.Trim() + " " : content).Append(EosToken);
        }
        return text.ToString();
    }
}
