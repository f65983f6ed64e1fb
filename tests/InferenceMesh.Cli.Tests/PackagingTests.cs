using System.Diagnostics;
using System.IO.Compression;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Cli.Tests;

/// <summary>Every library project packs as a NuGet package with its README, and the CLI as a .NET tool.</summary>
public sealed class PackagingTests
{
    public static TheoryData<string> Projects() =>
        ["InferenceMesh.Core", "InferenceMesh.Onnx", "InferenceMesh.Compute", "InferenceMesh.P2P", "InferenceMesh.Protocol", "InferenceMesh.Node", "InferenceMesh.Client", "InferenceMesh.Gateway", "InferenceMesh.Cli"];

    [Theory]
    [MemberData(nameof(Projects))]
    public async Task ProjectPacksWithItsReadme(string project)
    {
        var output = TestModels.NewTempDirectory($"pack-{project}");
        var configuration = new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;
        var csproj = Path.Combine(TestModels.RepositoryRoot, "src", project, $"{project}.csproj");
        var start = new ProcessStartInfo("dotnet", ["pack", csproj, "--no-build", "-c", configuration, "-o", output, "-nologo", "-v", "quiet"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var log = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, await log + await error);

        var package = Assert.Single(Directory.GetFiles(output, $"{project}.*.nupkg"));
        using var zip = ZipFile.OpenRead(package);
        Assert.Contains(zip.Entries, e => e.FullName == "README.md");
        var nuspec = new StreamReader(zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open()).ReadToEnd();
        Assert.Contains("<readme>README.md</readme>", nuspec);
        if (project == "InferenceMesh.Cli")
            Assert.Contains(zip.Entries, e => e.FullName == "tools/net10.0/any/DotnetToolSettings.xml");
        else
            Assert.Contains(zip.Entries, e => e.FullName == $"lib/net10.0/{project}.dll");
    }
}
