using System.CommandLine;
using System.Diagnostics;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Quantization;

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
        var checkpoint = new Option<string?>("--llama2c") { Description = "llama2.c checkpoint (.bin); needs --tokenizer" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "llama2.c tokenizer (.bin)" };
        var huggingFace = new Option<string?>("--hf") { Description = "Hugging Face model directory (config.json, *.safetensors, tokenizer.json)" };
        var dtype = new Option<string>("--dtype") { Description = "Weight storage of a --hf import: fp32 or fp16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "fp16");
        var output = new Option<string>("--out") { Description = "Directory to write model.onnx, the tokenizer and model.json into", Required = true };
        var (quantize, block, accuracy) = QuantizeOptions();
        var command = new Command("import", "Convert a llama2.c checkpoint or a Hugging Face Llama/Mistral/Qwen directory into an ONNX decoder with KV-cache inputs and outputs")
        {
            checkpoint, tokenizer, huggingFace, dtype, output, quantize, block, accuracy,
        };
        command.SetAction(parse =>
        {
            var outDir = parse.GetValue(output)!;
            var quantization = QuantizationOptions.Parse(parse.GetValue(quantize)!, parse.GetValue(block), parse.GetValue(accuracy));
            if (parse.GetValue(huggingFace) is { } hfDir)
            {
                if (parse.GetValue(checkpoint) is not null || parse.GetValue(tokenizer) is not null)
                    throw new MeshException(MeshErrorCode.InvalidArgument, "give either --hf DIR or --llama2c FILE --tokenizer FILE, not both");
                var started = Stopwatch.GetTimestamp();
                var import = ModelStore.ImportHuggingFace(hfDir, outDir, parse.GetValue(dtype) == "fp16" ? DType.Float16 : DType.Float32, quantization);
                var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
                using var process = Process.GetCurrentProcess();
                console.Out.WriteLine($"imported {import.Description.Name} ({import.Architecture}): {Describe(import.Description.Config)} -> {Path.Combine(outDir, ModelStore.ModelFile)}");
                console.Out.WriteLine($"weights {import.WeightBytes} bytes ({quantization?.Describe() ?? parse.GetValue(dtype)}) in {seconds:F1} s ({import.WeightBytes / seconds / 1e9:F2} GB/s); largest tensor {import.LargestTensorBytes} bytes as float32; peak memory {process.PeakWorkingSet64} bytes");
                return (int)ExitCode.Ok;
            }
            if (parse.GetValue(checkpoint) is not { } llama2c || parse.GetValue(tokenizer) is not { } tokenizerPath)
                throw new MeshException(MeshErrorCode.InvalidArgument, "give either --hf DIR or --llama2c FILE --tokenizer FILE");
            var description = ModelStore.ImportLlama2c(llama2c, tokenizerPath, outDir, quantization);
            console.Out.WriteLine($"imported {description.Name}: {Describe(description.Config)}{Quantized(description)} -> {Path.Combine(outDir, ModelStore.ModelFile)}");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    /// <summary>The <c>--quantize</c>, <c>--quantize-block</c> and <c>--quantize-accuracy</c> options of import and synth.</summary>
    private static (Option<string> Kind, Option<int> Block, Option<int> Accuracy) QuantizeOptions()
    {
        var kind = new Option<string>("--quantize")
        {
            Description = "Block-quantize the projection matrices (lossy; recorded in model.json and the manifest): int8, int4 or none. Runs as ONNX Runtime's com.microsoft.MatMulNBits",
            DefaultValueFactory = _ => "none",
        };
        kind.AcceptOnlyFromAmong("none", "int8", "int4");
        var block = new Option<int>("--quantize-block") { Description = "Weights per scale along the input dimension (power of two, at least 16); a last partial block is padded with zeros", DefaultValueFactory = _ => 32 };
        var accuracy = new Option<int>("--quantize-accuracy") { Description = "MatMulNBits accuracy_level: 4 (int8 activations, integer dot products; fastest) or 0 (ONNX Runtime's choice: float)", DefaultValueFactory = _ => 4 };
        return (kind, block, accuracy);
    }

    private static string Quantized(ModelDescription description) => description.Quantization is { } q ? $", weights {q}" : "";

    private static string Describe(ModelConfig c) =>
        $"dim {c.Dim}, {c.Layers} blocks, {c.Heads} heads ({c.KvHeads} kv, head size {c.HeadSize}), ffn {c.HiddenDim}, vocab {c.Vocab}, context {c.MaxSequence}";

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
        var (quantize, block, accuracy) = QuantizeOptions();
        var checkpoint = new Option<string?>("--llama2c-out") { Description = "Also write the same weights as a llama2.c checkpoint (float32), for llama2.c's run.c" };
        var command = new Command("synth", "Write a Llama-family model with seeded random weights") { dim, layers, heads, kvHeads, ffn, vocab, context, seed, output, quantize, block, accuracy, checkpoint };
        command.SetAction(parse =>
        {
            var config = new ModelConfig(parse.GetValue(dim), parse.GetValue(ffn), parse.GetValue(layers), parse.GetValue(heads), parse.GetValue(kvHeads),
                parse.GetValue(vocab), parse.GetValue(context), 1e-5f, 10000f);
            var quantization = QuantizationOptions.Parse(parse.GetValue(quantize)!, parse.GetValue(block), parse.GetValue(accuracy));
            var description = ModelStore.Synthesize(config, parse.GetValue(seed), parse.GetValue(output)!, quantization);
            console.Out.WriteLine($"synthesized {description.Name}{Quantized(description)} -> {Path.Combine(parse.GetValue(output)!, ModelStore.ModelFile)}");
            if (parse.GetValue(checkpoint) is { } checkpointPath)
            {
                Onnx.Import.Llama2cCheckpoint.Write(Onnx.Import.LlamaWeights.Synthetic(config, parse.GetValue(seed)), checkpointPath);
                console.Out.WriteLine($"llama2.c checkpoint of the same weights -> {checkpointPath}");
            }
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Split(ICliConsole console)
    {
        var model = new Argument<string>("model") { Description = "The graph to split (any .onnx name), or a model directory holding it" };
        var stages = new Option<int?>("--stages") { Description = "Number of block stages, as even as possible" };
        var blocks = new Option<string?>("--blocks") { Description = "Explicit block ranges, e.g. 0:2,2:5" };
        var output = new Option<string>("--out") { Description = "Directory for the stage files and manifest.json", Required = true };
        var tokenInput = new Option<string?>("--token-input") { Description = "The graph input holding token ids (default: input_ids, else found from the graph)" };
        var finalOutput = new Option<string?>("--output") { Description = "The graph output holding logits or the final state (default: logits, else found from the graph)" };
        var keepFused = new Option<bool>("--keep-fused-norms") { Description = "Keep fused skip-norms (SkipSimplifiedLayerNormalization, SkipLayerNormalization) as they are, so two tensors cross each layer boundary of a fused export, instead of rewriting them so only the residual stream crosses" };
        var command = new Command("split", "Cut a model into Head, block-range stages and Tail") { model, stages, blocks, output, tokenInput, finalOutput, keepFused };
        command.SetAction(parse =>
        {
            var stageCount = parse.GetValue(stages);
            var blockList = parse.GetValue(blocks);
            if ((stageCount is null) == (blockList is null))
                throw new MeshException(MeshErrorCode.InvalidArgument, "give exactly one of --stages N or --blocks a:b,b:c");
            var manifest = ModelStore.Split(parse.GetValue(model)!,
                count => blockList is null ? BlockRange.SplitEvenly(count, stageCount!.Value) : BlockRange.ParseContiguousList(blockList, count),
                parse.GetValue(output)!, parse.GetValue(tokenInput), parse.GetValue(finalOutput), unfuseSkipNorms: !parse.GetValue(keepFused));
            console.Out.WriteLine($"model {manifest.ModelId} ({manifest.BlockCount} blocks)");
            foreach (var stage in manifest.Stages)
                console.Out.WriteLine($"  {stage.Kind,-6} {(stage.Blocks?.ToString() ?? ""),-8} {stage.File,-20} {stage.ActivationInput} -> {stage.ActivationOutput}  sha256 {stage.Sha256[..16]}…");
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
