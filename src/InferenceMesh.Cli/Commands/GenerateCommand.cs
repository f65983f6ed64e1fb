using System.CommandLine;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Commands;

/// <summary><c>inferencemesh generate</c>: run a model in this process, head to tail, and print the text as it comes; with <c>--chat</c>, the prompt is the user's message (see <see cref="ChatOptions"/>).</summary>
public static class GenerateCommand
{
    public static readonly Option<int> MaxTokens = new("--max-tokens", "-n") { Description = "New tokens to generate after the prompt", DefaultValueFactory = _ => 256 };
    public static readonly Option<int?> Steps = new("--steps") { Description = "Cap on positions in all, prompt included (llama2.c's steps, which reference outputs use)" };
    public static readonly Option<float> Temperature = new("--temperature", "-t") { Description = "0 for greedy decoding", DefaultValueFactory = _ => 0f };
    public static readonly Option<float> TopP = new("--top-p") { Description = "Nucleus sampling mass", DefaultValueFactory = _ => 0.9f };
    public static readonly Option<ulong> Seed = new("--seed") { Description = "Sampling seed", DefaultValueFactory = _ => 42UL };
    public static readonly Option<string> Executor = new("--executor") { Description = "What runs the blocks: auto (ILGPU on a GPU, else ONNX Runtime), ort or ilgpu", DefaultValueFactory = _ => "auto" };

    public static readonly Option<string?> Ids = new("--ids") { Description = "Prompt as comma-separated token ids (for a model without a tokenizer); prints the new ids, comma-separated" };

    /// <summary>The token ids of <c>--ids</c>, or null when it is not given.</summary>
    public static IReadOnlyList<int>? PromptIds(ParseResult parse)
    {
        if (parse.GetValue(Ids) is not { } text) return null;
        var ids = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
            ids.Add(int.TryParse(part, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var id) && id >= 0
                ? id : throw new MeshException(MeshErrorCode.InvalidArgument, $"--ids '{text}': '{part}' is not a token id"));
        return ids;
    }

    /// <summary>The sampling options every generating verb shares.</summary>
    public static GenerationOptions Options(ParseResult parse) =>
        new(parse.GetValue(MaxTokens), parse.GetValue(Temperature), parse.GetValue(TopP), parse.GetValue(Seed), MaxPositions: parse.GetValue(Steps));

    public static Command Create(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Model directory (model.onnx, or an export with any .onnx name) or split directory (manifest.json)", Required = true };
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to continue", DefaultValueFactory = _ => "" };
        var stages = new Option<int?>("--stages") { Description = "Split an imported model into N block stages in this process" };
        var command = new Command("generate", "Generate text with a model in this process") { model, prompt, Ids, stages, MaxTokens, Steps, Temperature, TopP, Seed, Executor,
            ChatOptions.Chat, ChatOptions.System, ChatOptions.Message, ChatOptions.Template };
        command.SetAction((parse, cancellation) =>
        {
            var verbose = parse.GetValue(CliApp.Verbose);
            var executor = ExecutorKinds.Parse(parse.GetValue(Executor)!);
            using var local = Progress.Run(console, $"loading {parse.GetValue(model)}", () => LocalModel.Open(parse.GetValue(model)!, parse.GetValue(stages), executor,
                line => { if (verbose) console.Error.WriteLine(line); }), plainLine: false);
            if (PromptIds(parse) is { } ids)
            {
                console.Out.WriteLine(string.Join(',', local.GenerateIds(ids, Options(parse))));
                return Task.FromResult((int)ExitCode.Ok);
            }
            var turns = ChatOptions.Turns(parse, parse.GetValue(prompt)!);
            var texts = turns is null ? local.Generate(parse.GetValue(prompt)!, Options(parse)) : local.GenerateChat(turns, Options(parse), ChatOptions.TemplateFamily(parse));
            foreach (var text in texts)
            {
                cancellation.ThrowIfCancellationRequested();
                console.Out.Write(text);
                console.Out.Flush();
            }
            console.Out.WriteLine();
            return Task.FromResult((int)ExitCode.Ok);
        });
        return command;
    }
}
