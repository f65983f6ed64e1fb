using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Quantization;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// Locates the real model files (../shared/models beside the repository, or INFERENCEMESH_MODELS) and
/// imports them once per test run into a temporary directory. A missing model fails the test with a
/// message saying where it was looked for; it is never skipped.
/// </summary>
public static class TestModels
{
    /// <summary>A small grouped-query model with a separate feature count per dimension, so shape mix-ups show.</summary>
    public static readonly ModelConfig SmallSyntheticConfig = new(48, 80, 4, 6, 2, 300, 128, 1e-5f, 10000f);

    private static readonly Lazy<string> Stories260KDirectory = new(() => Import(Stories260KCheckpoint, Stories260KTokenizer, "stories260K"));
    private static readonly Lazy<string> SyntheticDirectory = new(() => Synthesize(SmallSyntheticConfig, 7, "synthetic"));
    private static readonly Lazy<string> Stories260KInt8Directory = new(() => Import(Stories260KCheckpoint, Stories260KTokenizer, "stories260K-int8", new QuantizationOptions(WeightQuantization.Int8)));
    private static readonly Lazy<string> Stories260KInt4Directory = new(() => Import(Stories260KCheckpoint, Stories260KTokenizer, "stories260K-int4", new QuantizationOptions(WeightQuantization.Int4)));

    public static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "InferenceMesh.sln"))) return dir.FullName;
            throw new InvalidOperationException($"no InferenceMesh.sln above {AppContext.BaseDirectory}");
        }
    }

    public static string ModelsRoot =>
        Environment.GetEnvironmentVariable("INFERENCEMESH_MODELS") is { Length: > 0 } configured
            ? configured
            : Path.GetFullPath(Path.Combine(RepositoryRoot, "..", "shared", "models"));

    public static string Stories260KCheckpoint => Require(Path.Combine(ModelsRoot, "stories260K", "stories260K.bin"));
    public static string Stories260KTokenizer => Require(Path.Combine(ModelsRoot, "stories260K", "tok512.bin"));

    /// <summary>GPT-2 exported by torch.onnx.export (stacked KV, no LM head, nodes out of order, tensors defined twice).</summary>
    public static string Gpt2TorchExport => Require(Path.Combine(ModelsRoot, "onnx-exports", "gpt2-torch-export", "gpt2_past.onnx"));

    /// <summary>tiny-random Llama from the ONNX Runtime GenAI model builder (fp16, com.microsoft fused ops, external data).</summary>
    public static string LlamaGenAiFp16 => Require(Path.Combine(ModelsRoot, "onnx-exports", "llama-genai-builder-fp16", "model.onnx"));

    /// <summary>The imported stories260K directory (model.onnx, tokenizer.bin, model.json).</summary>
    public static string Stories260K => Stories260KDirectory.Value;

    /// <summary>stories260K imported with block-quantized weights (<see cref="WeightQuantization.Int8"/> or <see cref="WeightQuantization.Int4"/>, block 32, the default accuracy level).</summary>
    public static string Stories260KQuantized(WeightQuantization kind) => kind switch
    {
        WeightQuantization.Int8 => Stories260KInt8Directory.Value,
        WeightQuantization.Int4 => Stories260KInt4Directory.Value,
        _ => Stories260K,
    };

    /// <summary>An imported synthetic model of <see cref="SmallSyntheticConfig"/>.</summary>
    public static string SmallSynthetic => SyntheticDirectory.Value;

    /// <summary>The reference text of stories260K's README (greedy, 256 steps).</summary>
    public static string Stories260KReferenceText
    {
        get
        {
            var readme = File.ReadAllLines(Require(Path.Combine(ModelsRoot, "stories260K", "README.md")));
            var heading = Array.FindIndex(readme, l => l.StartsWith("## Reference output", StringComparison.Ordinal));
            var open = Array.FindIndex(readme, heading, l => l == "```");
            var close = Array.FindIndex(readme, open + 1, l => l == "```");
            return string.Join('\n', readme[(open + 1)..close]);
        }
    }

    /// <summary>
    /// A new directory under this test process's own temporary root, which is deleted when the process exits
    /// (and, should it be killed, by the next test process to start): test runs once left gigabytes of imported
    /// models and swarm state in /tmp.
    /// </summary>
    public static string NewTempDirectory(string stem) =>
        Directory.CreateDirectory(Path.Combine(ProcessTempRoot.Value, $"{stem}-{Interlocked.Increment(ref _tempDirectoryCount)}")).FullName;

    private static int _tempDirectoryCount;

    private static readonly Lazy<string> ProcessTempRoot = new(CreateProcessTempRoot);

    private static string CreateProcessTempRoot()
    {
        var parent = Path.Combine(Path.GetTempPath(), "inferencemesh-tests");
        Directory.CreateDirectory(parent);
        foreach (var root in Directory.EnumerateDirectories(parent))
            if (int.TryParse(Path.GetFileName(root).Split('-')[0], out var pid) && !IsRunning(pid)) DeleteQuietly(root);
        var own = Directory.CreateDirectory(Path.Combine(parent, $"{Environment.ProcessId}-{Guid.NewGuid():N}"[..16])).FullName;
        AppDomain.CurrentDomain.ProcessExit += (_, _) => DeleteQuietly(own);
        return own;
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static void DeleteQuietly(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string Import(string checkpoint, string tokenizer, string stem, QuantizationOptions? quantization = null)
    {
        var directory = NewTempDirectory(stem);
        ModelStore.ImportLlama2c(checkpoint, tokenizer, directory, quantization);
        return directory;
    }

    private static string Synthesize(ModelConfig config, int seed, string stem)
    {
        var directory = NewTempDirectory(stem);
        ModelStore.Synthesize(config, seed, directory);
        return directory;
    }

    private static string Require(string path) => File.Exists(path)
        ? path
        : throw new FileNotFoundException($"model file {path} is missing: the tests read the real model from ../shared/models beside the repository (or INFERENCEMESH_MODELS); see models/README.md");
}
