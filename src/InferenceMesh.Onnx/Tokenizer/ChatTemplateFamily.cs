namespace InferenceMesh.Onnx.Tokenizer;

/// <summary>The chat template families rendered in code (no Jinja engine is served for .NET); <c>--chat-template</c> names them in lower case.</summary>
public enum ChatTemplateFamily
{
    /// <summary><c>&lt;|im_start|&gt;role\ncontent&lt;|im_end|&gt;\n</c>: Qwen, SmolLM, many fine-tunes.</summary>
    ChatMl,

    /// <summary>Header tokens: <c>&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;</c>.</summary>
    Llama3,

    /// <summary><c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n…\n&lt;&lt;/SYS&gt;&gt;\n\nuser [/INST] assistant &lt;/s&gt;</c>.</summary>
    Llama2,

    /// <summary><c>&lt;s&gt;[INST] user [/INST]assistant&lt;/s&gt;</c> (Mistral Instruct v0.1/v0.2).</summary>
    Mistral,
}
