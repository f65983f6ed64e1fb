using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Quantization;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

public sealed class QuantizedSwarmTests
{
    [Theory]
    [InlineData(WeightQuantization.Int8, RouteMode.Chained)]
    [InlineData(WeightQuantization.Int4, RouteMode.Relayed)]
    public async Task QuantizedStories260KServedByTwoNodesGeneratesWhatItDoesInOneProcess(WeightQuantization kind, RouteMode mode)
    {
        var imported = TestModels.Stories260KQuantized(kind);
        var split = TestModels.NewTempDirectory($"{kind}-per-block");
        try
        {
            var manifest = ModelStore.Split(imported, n => BlockRange.SplitEvenly(n, n), split);
            var options = new GenerationOptions(Temperature: 0f, MaxPositions: 96);
            string expected;
            using (var local = LocalModel.Open(imported))
                expected = string.Concat(local.Generate("Once upon a time", options));

            await using var mesh = new InMemoryMesh();
            mesh.AddNode(split, new BlockRange(0, 2));
            mesh.AddNode(split, new BlockRange(2, 5));
            await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh), new MeshClientOptions { Mode = mode });
            Assert.Equal(manifest.ModelId, client.Manifest.ModelId);
            Assert.NotNull(client.Manifest.Quantization);
            Assert.Equal(expected, string.Concat(await client.GenerateAsync("Once upon a time", options).ToListAsync()));
        }
        finally
        {
            Directory.Delete(split, recursive: true);
        }
    }
}
