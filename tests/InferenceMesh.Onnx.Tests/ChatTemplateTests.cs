using InferenceMesh.Core;
using InferenceMesh.Onnx.Tokenizer;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Onnx.Tests;

/// <summary>Each family rendered against strings worked out by hand from its public Jinja template.</summary>
public sealed class ChatTemplateTests
{
    // Abbreviated from the public tokenizer_config.json templates: enough of each to show its markers.
    private const string Llama2Jinja = "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% endif %}{% for message in loop_messages %}"
        + "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}"
        + "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    private const string MistralJinja = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";
    private const string Llama3Jinja = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        + "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
    private const string ChatMlJinja = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
        + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private static readonly ChatTurn[] Conversation =
    [
        ChatTurn.System("You are a storyteller."),
        ChatTurn.User("Tell me a story."),
        ChatTurn.Assistant("Once upon a time."),
        ChatTurn.User("Go on."),
    ];

    [Theory]
    [InlineData(Llama2Jinja, ChatTemplateFamily.Llama2)]
    [InlineData(MistralJinja, ChatTemplateFamily.Mistral)]
    [InlineData(Llama3Jinja, ChatTemplateFamily.Llama3)]
    [InlineData(ChatMlJinja, ChatTemplateFamily.ChatMl)]
    public void FamilyIsDetectedByItsMarkers(string jinja, ChatTemplateFamily family) => Assert.Equal(family, ChatTemplate.Detect(jinja));

    [Fact]
    public void Llama2RendersSystemInsideTheFirstInstAndClosesAssistantTurnsWithEos()
    {
        Assert.Equal(
            "<s>[INST] <<SYS>>\nYou are a storyteller.\n<</SYS>>\n\nTell me a story. [/INST] Once upon a time. </s><s>[INST] Go on. [/INST]",
            ChatTemplate.For(ChatTemplateFamily.Llama2).Render(Conversation));
        Assert.Equal("<s>[INST] Hi [/INST]", ChatTemplate.For(ChatTemplateFamily.Llama2).Render([ChatTurn.User("Hi ")]));
    }

    [Fact]
    public void MistralRendersBosOnceAndNoSpaceBeforeTheReply()
    {
        Assert.Equal("<s>[INST] Tell me a story. [/INST]Once upon a time.</s>[INST] Go on. [/INST]",
            ChatTemplate.For(ChatTemplateFamily.Mistral).Render(Conversation[1..]));
        Assert.Equal("<s>[INST] You are a storyteller.\n\nTell me a story. [/INST]", ChatTemplate.For(ChatTemplateFamily.Mistral).Render(Conversation[..2]));
    }

    [Fact]
    public void Llama3RendersHeaderTokensAndTheGenerationPrompt()
    {
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a storyteller.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nTell me a story.<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\nOnce upon a time.<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nGo on.<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            ChatTemplate.For(ChatTemplateFamily.Llama3).Render(Conversation));
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
            ChatTemplate.For(ChatTemplateFamily.Llama3).Render([ChatTurn.User(" Hi\n")], addGenerationPrompt: false));
    }

    [Fact]
    public void ChatMlRendersImStartBlocksAndTheGenerationPrompt()
    {
        Assert.Equal(
            "<|im_start|>system\nYou are a storyteller.<|im_end|>\n<|im_start|>user\nTell me a story.<|im_end|>\n"
            + "<|im_start|>assistant\nOnce upon a time.<|im_end|>\n<|im_start|>user\nGo on.<|im_end|>\n<|im_start|>assistant\n",
            ChatTemplate.For(ChatTemplateFamily.ChatMl).Render(Conversation));
        Assert.Equal("<|im_end|>", ChatTemplate.For(ChatTemplateFamily.ChatMl).EndOfTurnToken);
    }

    [Fact]
    public void InstFamiliesRefuseTurnsThatDoNotAlternate()
    {
        var error = Assert.Throws<MeshException>(() => ChatTemplate.For(ChatTemplateFamily.Llama2).Render([ChatTurn.User("a"), ChatTurn.User("b")]));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains("alternate", error.Message);
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => ChatTemplate.For(ChatTemplateFamily.ChatMl).Render([new ChatTurn("tool", "x")])).Code);
    }

    [Fact]
    public void UnrecognisedTemplateIsAnErrorNamingTheFamiliesAndTheOverrideRendersIt()
    {
        var directory = TestModels.NewTempDirectory("tok-chat");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory, chatTemplate: "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}");
        using var tokenizer = HfTokenizer.Load(directory);
        var error = Assert.Throws<MeshException>(() => ChatPrompt.Encode(tokenizer, [ChatTurn.User("Hi")]));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains("--chat-template chatml|llama3|llama2|mistral", error.Message);
        Assert.Equal(ChatTemplateFamily.Mistral, ChatPrompt.Encode(tokenizer, [ChatTurn.User("Hi")], ChatTemplateFamily.Mistral).Template!.Family);
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => ChatTemplate.Parse("vicuna")).Code);
        Assert.Equal(ChatTemplateFamily.ChatMl, ChatTemplate.Parse("ChatML"));
    }

    [Fact]
    public void Llama2TemplateOverTok512EncodesBosAndEosTokensFromTheirText()
    {
        var directory = TestModels.NewTempDirectory("tok-llama2-chat");
        HfTokenizerFixture.WriteFromLlama2c(TestModels.Stories260KTokenizer, directory, chatTemplate: Llama2Jinja);
        using var tokenizer = HfTokenizer.Load(directory);
        var prompt = ChatPrompt.Encode(tokenizer, Conversation);
        Assert.Equal(ChatTemplateFamily.Llama2, prompt.Template!.Family);
        Assert.Equal(1, prompt.Tokens[0]);
        Assert.Equal(2, prompt.Tokens.Count(t => t == 1));
        Assert.Equal(1, prompt.Tokens.Count(t => t == 2));
        Assert.Equal([2], prompt.StopIds);
        var llama2c = Llama2cTokenizer.Load(TestModels.Stories260KTokenizer);
        Assert.Equal(prompt.Tokens, llama2c.EncodeWithSpecialTokens(prompt.Template.Render(Conversation), addBos: false));
    }

    [Fact]
    public void ModelWithoutTemplateContinuesTheMessagesAsPlainText()
    {
        var llama2c = Llama2cTokenizer.Load(TestModels.Stories260KTokenizer);
        var prompt = ChatPrompt.Encode(llama2c, [ChatTurn.System(""), ChatTurn.User("Once upon"), ChatTurn.User("a time")]);
        Assert.Null(prompt.Template);
        Assert.Empty(prompt.StopIds);
        Assert.Equal(llama2c.Encode("Once upon\na time"), prompt.Tokens);
    }
}
