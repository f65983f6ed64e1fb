using System.CommandLine;
using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Cli.Commands;

/// <summary><c>inferencemesh model import|synth|split</c>: produce and cut ONNX models.</summary>
public static class ModelCommand
{
    public static Command Create(ICliConsole console)
    {
        var command = new Command("model", "Import, synthesize and split models");
        command.Subcommands.Add(Import(console));
        command.Subcommands.Add(Synth(console));
        command.Subcommands.Add(Split(console));
        return command;
    }

    private static Command Import(ICliConsole console)
    {
        var checkpoint = new Option<string>("--llama2c") { Description = "llama2.c checkpoint (.bin)", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "llama2.c tokenizer (.bin)", Required = true };
        var output = new Option<string>("--out") { Description = "Directory to write model.onnx, tokenizer.bin and model.json into", Required = true };
        var command = new Command("import", "Convert a llama2.c checkpoint into an ONNX decoder with KV-cache inputs and outputs") { checkpoint, tokenizer, output };
        command.SetAction(parse =>
        {
            var description = ModelStore.ImportLlama2c(parse.GetValue(checkpoint)!, parse.GetValue(tokenizer)!, parse.GetValue(output)!);
            var c = description.Config;
            console.Out.WriteLine($"imported {description.Name}: dim {c.Dim}, {c.Layers} blocks, {c.Heads} heads ({c.KvHeads} kv), ffn {c.HiddenDim}, vocab {c.Vocab}, context {c.MaxSequence} -> {Path.Combine(parse.GetValue(output)!, ModelStore.ModelFile)}");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Synth(ICliConsole console)
    {
        Option<int> Int(string name, string description, int? defaultValue = null) => defaultValue is { } d
            ? new Option<int>(name) { Description = description, DefaultValueFactory = _ => d }
            : new Option<int>(name) { Description = description, Required = true };
        var dim = Int("--dim", "Model width");
        var layers = Int("--layers", "Transformer blocks");
        var heads = Int("--heads", "Attention heads");
        var kvHeads = Int("--kv-heads", "Key/value heads (grouped-query attention)");
        var ffn = Int("--ffn", "Feed-forward hidden width");
        var vocab = Int("--vocab", "Vocabulary size (at least 259)", 512);
        var context = Int("--context", "Maximum sequence length", 512);
        var seed = Int("--seed", "Weight seed", 1);
        var output = new Option<string>("--out") { Description = "Directory to write into", Required = true };
        var command = new Command("synth", "Write a Llama-family model with seeded random weights") { dim, layers, heads, kvHeads, ffn, vocab, context, seed, output };
        command.SetAction(parse =>
        {
            var config = new ModelConfig(parse.GetValue(dim), parse.GetValue(ffn), parse.GetValue(layers), parse.GetValue(heads), parse.GetValue(kvHeads),
                parse.GetValue(vocab), parse.GetValue(context), 1e-5f, 10000f);
            var description = ModelStore.Synthesize(config, parse.GetValue(seed), parse.GetValue(output)!);
            console.Out.WriteLine($"synthesized {description.Name} -> {Path.Combine(parse.GetValue(output)!, ModelStore.ModelFile)}");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Split(ICliConsole console)
    {
        var model = new Argument<string>("model") { Description = "The model.onnx to split" };
        var stages = new Option<int?>("--stages") { Description = "Number of block stages, as even as possible" };
        var blocks = new Option<string?>("--blocks") { Description = "Explicit block ranges, e.g. 0:2,2:5" };
        var output = new Option<string>("--out") { Description = "Directory for the stage files and manifest.json", Required = true };
        var command = new Command("split", "Cut a model into Head, block-range stages and Tail") { model, stages, blocks, output };
        command.SetAction(parse =>
        {
            var stageCount = parse.GetValue(stages);
            var blockList = parse.GetValue(blocks);
            if ((stageCount is null) == (blockList is null))
                throw new MeshException(MeshErrorCode.InvalidArgument, "give exactly one of --stages N or --blocks a:b,b:c");
            var manifest = ModelStore.Split(parse.GetValue(model)!,
                count => blockList is null ? BlockRange.SplitEvenly(count, stageCount!.Value) : BlockRange.ParseContiguousList(blockList, count),
                parse.GetValue(output)!);
            console.Out.WriteLine($"model {manifest.ModelId} ({manifest.BlockCount} blocks)");
            foreach (var stage in manifest.Stages)
                console.Out.WriteLine($"  {stage.Kind,-6} {(stage.Blocks?.ToString() ?? ""),-8} {stage.File,-20} {stage.ActivationInput} -> {stage.ActivationOutput}  sha256 {stage.Sha256[..16]}…");
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
