using System.Reflection;

namespace InferenceMesh.Cli.Tests;

/// <summary>The dependency table of DESIGN.md, checked on the compiled assemblies.</summary>
public sealed class LayeringTests
{
    private static readonly Dictionary<string, string[]> Allowed = new()
    {
        ["InferenceMesh.Core"] = [],
        ["InferenceMesh.Onnx"] = ["InferenceMesh.Core"],
        ["InferenceMesh.Compute"] = ["InferenceMesh.Core", "InferenceMesh.Onnx"],
        ["InferenceMesh.P2P"] = ["InferenceMesh.Core"],
        ["InferenceMesh.Protocol"] = ["InferenceMesh.Core"],
        ["InferenceMesh.Node"] = ["InferenceMesh.Core", "InferenceMesh.Compute", "InferenceMesh.P2P", "InferenceMesh.Protocol"],
        ["InferenceMesh.Client"] = ["InferenceMesh.Core", "InferenceMesh.Compute", "InferenceMesh.P2P", "InferenceMesh.Protocol", "InferenceMesh.Onnx"],
        ["InferenceMesh.Gateway"] = ["InferenceMesh.Core", "InferenceMesh.Client", "InferenceMesh.Compute", "InferenceMesh.P2P", "InferenceMesh.Protocol", "InferenceMesh.Onnx"],
    };

    public static TheoryData<string> Layers()
    {
        var data = new TheoryData<string>();
        foreach (var name in Allowed.Keys)
            if (File.Exists(Path.Combine(AppContext.BaseDirectory, name + ".dll"))) data.Add(name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Layers))]
    public void LayerReferencesOnlyTheLayersBelowIt(string layer)
    {
        var assembly = Assembly.LoadFrom(Path.Combine(AppContext.BaseDirectory, layer + ".dll"));
        var references = assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("InferenceMesh.", StringComparison.Ordinal));
        Assert.All(references, r => Assert.True(Allowed[layer].Contains(r), $"{layer} references {r}, which DESIGN.md's layer table does not allow"));
    }

    [Fact]
    public void EveryShippedLayerIsChecked()
    {
        var shipped = Directory.GetFiles(AppContext.BaseDirectory, "InferenceMesh.*.dll")
            .Select(Path.GetFileNameWithoutExtension)
            .Where(n => !n!.EndsWith(".Tests", StringComparison.Ordinal) && n != "InferenceMesh.Cli");
        Assert.All(shipped, name => Assert.True(Allowed.ContainsKey(name!), $"{name} is not in the layer table"));
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "InferenceMesh.Compute.dll")), "the layer check found no assemblies to check");
    }
}
