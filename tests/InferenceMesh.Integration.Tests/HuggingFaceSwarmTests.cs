using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

public sealed class HuggingFaceSwarmTests
{
    [Theory]
    [InlineData(true, 1)]
    [InlineData(false, 2)]
    public async Task Stories260KImportedFromHuggingFaceLayoutPrintsTheReferenceTextThroughAThreeNodeSwarm(bool tied, int shards)
    {
        var parent = TestModels.NewTempDirectory("hf-swarm");
        try
        {
            var source = HuggingFaceFixtures.Stories260K(Path.Combine(parent, "source"), tied, shards);
            var imported = Path.Combine(parent, "imported");
            var import = await LocalSwarmHandle.RunCliAsync(["model", "import", "--hf", source, "--out", imported]);
            Assert.True(import.Code == 0, import.Error);

            await using var swarm = await LocalSwarmHandle.StartAsync(3, model: imported);
            foreach (var route in new[] { "chained", "relayed" })
            {
                var result = await swarm.RunAsync("prompt", "Once upon a time", "--route", route, "--steps", "256");
                Assert.True(result.Code == 0, result.Error);
                Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
            }
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }
}
