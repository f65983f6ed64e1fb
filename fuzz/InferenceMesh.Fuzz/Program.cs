using InferenceMesh.Fuzz;
using SharpFuzz;

// inferencemesh-fuzz afl <target>                 one AFL++ worker (the target assemblies instrumented by `sharpfuzz`)
// inferencemesh-fuzz run <target> <corpus> <n>    n inputs in-process: the corpus, then seeded mutations
// inferencemesh-fuzz seed <corpus root>           writes the seed corpora from real encoders and traffic
// inferencemesh-fuzz list                         the target names
if (args is ["afl", var name])
{
    // Instrumented code may run only inside Run, once SharpFuzz has mapped AFL's coverage memory: the
    // targets' static setup (a span key from the P2P assembly) would otherwise write to no map and crash.
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        FuzzTargets.Get(name).Run(copy.ToArray());
    });
    return 0;
}
if (args is ["run", var runName, var corpus, var count])
{
    var result = FuzzRun.InProcess(FuzzTargets.Get(runName), corpus, int.Parse(count));
    Console.WriteLine($"{runName}: {result.Executions} executions, {result.Findings.Count} findings");
    foreach (var (input, error) in result.Findings)
        Console.WriteLine($"  {Convert.ToHexString(input)}: {error.GetType().Name}: {error.Message}");
    return result.Findings.Count == 0 ? 0 : 1;
}
if (args is ["seed", var root])
{
    SeedCorpus.Write(root);
    return 0;
}
if (args is ["list"])
{
    foreach (var t in FuzzTargets.All) Console.WriteLine(t.Name);
    return 0;
}
Console.Error.WriteLine("usage: InferenceMesh.Fuzz afl <target> | run <target> <corpus> <executions> | seed <corpus root> | list");
return 2;
