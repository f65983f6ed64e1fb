using System.CommandLine;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// The chat options <c>prompt</c> and <c>generate</c> share. <c>--chat</c> makes the text the last user message;
/// <c>--system TEXT</c> puts a system message first; <c>--message role:TEXT</c> (repeatable, in order; role is
/// system, user or assistant) gives earlier turns. Any of them turns chat on. The conversation is rendered with
/// the model's chat template, or with <c>--chat-template chatml|llama3|llama2|mistral</c>.
/// </summary>
public static class ChatOptions
{
    public static readonly Option<bool> Chat = new("--chat") { Description = "Treat the text as a user message, render the model's chat template and print only the reply" };
    public static readonly Option<string?> System = new("--system") { Description = "A system message before the conversation (implies --chat)" };
    public static readonly Option<string[]> Message = new("--message") { Description = "An earlier turn as role:text, role being system, user or assistant; repeatable, in order (implies --chat)", DefaultValueFactory = _ => [] };
    public static readonly Option<string?> Template = new("--chat-template") { Description = $"Render chats with this family's template instead of the model's: {ChatTemplate.FamilyNames}" };

    /// <summary>The conversation the options give, ending with <paramref name="text"/> as the user's message when non-empty; null when chat is off.</summary>
    public static List<ChatTurn>? Turns(ParseResult parse, string text)
    {
        var system = parse.GetValue(System);
        var messages = parse.GetValue(Message) ?? [];
        if (!parse.GetValue(Chat) && system is null && messages.Length == 0) return null;
        var turns = new List<ChatTurn>();
        if (system is not null) turns.Add(ChatTurn.System(system));
        foreach (var message in messages)
        {
            var colon = message.IndexOf(':', StringComparison.Ordinal);
            var role = colon < 0 ? "" : message[..colon].Trim().ToLowerInvariant();
            if (role is not (ChatTurn.SystemRole or ChatTurn.UserRole or ChatTurn.AssistantRole))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"--message '{message}' must be role:text with role system, user or assistant");
            turns.Add(new ChatTurn(role, message[(colon + 1)..].TrimStart()));
        }
        if (text.Length > 0) turns.Add(ChatTurn.User(text));
        if (turns.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "--chat needs a message: give the text, --system or --message");
        return turns;
    }

    public static ChatTemplateFamily? TemplateFamily(ParseResult parse) => parse.GetValue(Template) is { } name ? ChatTemplate.Parse(name) : null;
}
