namespace InferenceMesh.Fuzz;

/// <summary>What an in-process run of one target did: executions and the inputs whose failure escaped.</summary>
/// <param name="Executions">Inputs fed (the corpus, then its mutations).</param>
/// <param name="Findings">Each failing input with the exception that escaped; empty when the target held.</param>
public sealed record FuzzRun(int Executions, IReadOnlyList<(byte[] Input, Exception Error)> Findings)
{
    /// <summary>
    /// Feeds <paramref name="target"/> every file of <paramref name="corpus"/>, then mutations of them until
    /// <paramref name="executions"/> inputs have run; stops after the first few findings.
    /// </summary>
    public static FuzzRun InProcess(FuzzTarget target, string corpus, int executions, int seed = 1)
    {
        var seeds = Directory.Exists(corpus) ? Directory.GetFiles(corpus).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList() : [];
        if (seeds.Count == 0) seeds.Add([]);
        var mutator = new Mutator(seed);
        var random = new Random(seed);
        var findings = new List<(byte[], Exception)>();
        var run = 0;
        for (; run < executions && findings.Count < 5; run++)
        {
            var input = run < seeds.Count ? seeds[run] : mutator.Mutate(seeds[random.Next(seeds.Count)], seeds[random.Next(seeds.Count)]);
            try
            {
                target.Run(input);
            }
            catch (Exception e)
            {
                findings.Add((input, e));
            }
        }
        return new FuzzRun(run, findings);
    }
}
