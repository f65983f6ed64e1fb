using System.Diagnostics;
using System.Xml.Linq;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>The sample program under samples/: built on the library alone, it joins a local swarm and streams the story.</summary>
public sealed class SampleTests
{
    private static string SampleDirectory => Path.Combine(TestModels.RepositoryRoot, "samples", "StoryTeller");

    /// <summary>The sample's build output, in the same configuration as this test assembly.</summary>
    private static string SampleAssembly
    {
        get
        {
            var configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
            var path = Path.Combine(SampleDirectory, "bin", configuration, "net10.0", "StoryTeller.dll");
            Assert.True(File.Exists(path), $"the sample was not built at {path}");
            return path;
        }
    }

    [Fact]
    public void SampleReferencesOnlyLibraryProjects()
    {
        var project = XDocument.Load(Path.Combine(SampleDirectory, "StoryTeller.csproj"));
        var references = project.Descendants("ProjectReference").Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value)).ToList();
        Assert.Equal(["InferenceMesh.Client"], references);
        var shipped = Directory.GetFiles(Path.GetDirectoryName(SampleAssembly)!, "*.dll").Select(Path.GetFileName).ToList();
        Assert.Contains("InferenceMesh.Client.dll", shipped);
        Assert.DoesNotContain("inferencemesh.dll", shipped);
        Assert.DoesNotContain("InferenceMesh.Cli.dll", shipped);
    }

    [Fact]
    public async Task SampleStreamsTheReferenceStoryFromALocalSwarm()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2);
        var start = new ProcessStartInfo("dotnet", [SampleAssembly, swarm.State, "Once upon a time"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, await error);
        Assert.Equal(TestModels.Stories260KReferenceText + "\n", await output);
    }
}
