using System.Diagnostics;
using InferenceMesh.Fuzz;
using Xunit.Abstractions;

namespace InferenceMesh.Fuzz.Tests;

/// <summary>
/// CI's bounded fuzz run: every target gets its committed corpus, then seeded mutations of it, in-process (AFL++
/// runs the same targets offline: docs/FUZZING.md). Only typed errors may come out of a parser.
/// </summary>
public class FuzzTargetTests(ITestOutputHelper output)
{
    private const int Executions = 4000;

    public static TheoryData<string> Targets() => [.. FuzzTargets.All.Select(t => t.Name)];

    private static string Corpus(string target) => Path.Combine(RepositoryRoot(), "fuzz", "corpus", target);

    private static string RepositoryRoot()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "InferenceMesh.sln")))
            dir = Path.GetDirectoryName(dir) ?? throw new DirectoryNotFoundException("InferenceMesh.sln not found above the test binaries");
        return dir;
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void EveryTargetOnlyThrowsTypedErrorsOnItsCorpusAndItsMutations(string target)
    {
        var corpus = Corpus(target);
        Assert.True(Directory.GetFiles(corpus).Length > 0, $"no seed corpus in {corpus}");
        var clock = Stopwatch.StartNew();
        var run = FuzzRun.InProcess(FuzzTargets.Get(target), corpus, Executions, seed: 17);
        output.WriteLine($"{target}: {run.Executions} executions in {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(run.Findings.Count == 0,
            string.Join("\n", run.Findings.Select(f => $"{Convert.ToHexString(f.Input)[..Math.Min(400, f.Input.Length * 2)]}: {f.Error}")));
        Assert.Equal(Executions, run.Executions);
    }

    [Fact]
    public void EveryCrashFoundByAflStaysFixed()
    {
        var regressions = Path.Combine(RepositoryRoot(), "fuzz", "regressions");
        var files = Directory.GetFiles(regressions, "*", SearchOption.AllDirectories);
        Assert.NotEmpty(files);
        foreach (var file in files)
            FuzzTargets.Get(Path.GetFileName(Path.GetDirectoryName(file))!).Run(File.ReadAllBytes(file));
    }
}
