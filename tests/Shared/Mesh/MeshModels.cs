using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Tests.Shared;

/// <summary>Models split one block per stage, shared by the mesh tests.</summary>
public static class MeshModels
{
    private static readonly Lazy<string> PerBlock = new(() =>
    {
        var directory = TestModels.NewTempDirectory("stories-per-block");
        ModelStore.Split(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile), n => BlockRange.SplitEvenly(n, n), directory);
        return directory;
    });

    private static readonly Lazy<string> Float16PerBlock = new(() =>
    {
        var directory = TestModels.NewTempDirectory("genai-fp16-per-block");
        ModelStore.Split(TestModels.LlamaGenAiFp16, n => BlockRange.SplitEvenly(n, n), directory);
        return directory;
    });

    /// <summary>stories260K, 5 stages.</summary>
    public static string Stories260KPerBlock => PerBlock.Value;

    /// <summary>The ONNX Runtime GenAI builder's fp16 tiny Llama (float16 activations and logits), 2 stages.</summary>
    public static string LlamaGenAiFp16PerBlock => Float16PerBlock.Value;
}
