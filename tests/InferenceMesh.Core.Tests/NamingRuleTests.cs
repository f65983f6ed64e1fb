using System.Diagnostics;

namespace InferenceMesh.Core.Tests;

/// <summary>The field naming rule of docs/CONVENTIONS.md is enforced by the build, not by review.</summary>
public sealed class NamingRuleTests
{
    [Fact]
    public async Task BuildFailsOnAFieldNamedAgainstTheRule()
    {
        // A throwaway project inside the repository (under this test's bin/, which git ignores), so it gets the
        // repository's .editorconfig and Directory.Build.props exactly as every project does.
        var probe = Path.Combine(AppContext.BaseDirectory, $"naming-probe-{Guid.NewGuid():N}");
        Directory.CreateDirectory(probe);
        try
        {
            await File.WriteAllTextAsync(Path.Combine(probe, "Probe.csproj"), "<Project Sdk=\"Microsoft.NET.Sdk\"><PropertyGroup><IsPackable>false</IsPackable></PropertyGroup></Project>");
            await File.WriteAllTextAsync(Path.Combine(probe, "Widget.cs"), "namespace Probe;\n\npublic sealed class Widget\n{\n    private int count;\n\n    public int Next() => ++count;\n}\n");
            var (code, output) = await BuildAsync(probe);
            Assert.NotEqual(0, code);
            Assert.Contains("IDE1006", output);

            await File.WriteAllTextAsync(Path.Combine(probe, "Widget.cs"), "namespace Probe;\n\npublic sealed class Widget\n{\n    private int _count;\n\n    public int Next() => ++_count;\n}\n");
            var (fixedCode, fixedOutput) = await BuildAsync(probe);
            Assert.True(fixedCode == 0, fixedOutput);
        }
        finally
        {
            Directory.Delete(probe, recursive: true);
        }
    }

    private static async Task<(int Code, string Output)> BuildAsync(string directory)
    {
        var start = new ProcessStartInfo("dotnet", ["build", directory, "-nologo", "-v", "quiet"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await output + await error);
    }
}
