using InferenceMesh.Core;
using InferenceMesh.Onnx;

namespace InferenceMesh.Tests.Shared;

/// <summary>stories260K split one block per stage, shared by the mesh tests.</summary>
public static class MeshModels
{
    private static readonly Lazy<string> PerBlock = new(() =>
    {
        var directory = TestModels.NewTempDirectory("stories-per-block");
        ModelStore.Split(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile), n => BlockRange.SplitEvenly(n, n), directory);
        return directory;
    });

    public static string Stories260KPerBlock => PerBlock.Value;
}
