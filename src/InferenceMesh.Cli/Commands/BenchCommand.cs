using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh bench generate|stage|mesh|quantize|soak|soak-verdict</c>: tokens/s of in-process generation (unsplit and split,
/// exact and quantized weights) and through loopback swarms, side by side in one run; and the churn soak and its verdict.
/// </summary>
public static class BenchCommand
{
    public static Command Create(ICliConsole console)
    {
        var command = new Command("bench", "Measure speed; prints a Markdown table");
        command.Subcommands.Add(Generate(console));
        command.Subcommands.Add(Stage(console));
        command.Subcommands.Add(Mesh(console));
        command.Subcommands.Add(Batching(console));
        command.Subcommands.Add(Soak(console));
        command.Subcommands.Add(SoakVerdict(console));
        command.Subcommands.Add(Quantize(console));
        return command;
    }

    private static Command Soak(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Imported model directory (model.onnx)", Required = true };
        var duration = new Option<string>("--duration") { Description = "How long new generations are started, e.g. 10m or 1h", DefaultValueFactory = _ => "1h" };
        var sessions = new Option<int>("--sessions") { Description = "Generations kept running at once", DefaultValueFactory = _ => 32 };
        var killPeriod = new Option<string>("--kill-period") { Description = "Time between kills of a random serving node (SIGKILL, then restart)", DefaultValueFactory = _ => "60s" };
        var seed = new Option<int>("--seed") { Description = "Seeds the victims and the prompts", DefaultValueFactory = _ => 1 };
        var nodes = new Option<int>("--nodes") { Description = "Serving nodes", DefaultValueFactory = _ => 5 };
        var replicas = new Option<int>("--replicas") { Description = "Servers per block (at least 2: the spares)", DefaultValueFactory = _ => 2 };
        var sampleInterval = new Option<string>("--sample-interval") { Description = "Time between samples of RSS, open files and threads", DefaultValueFactory = _ => "5s" };
        var warmUp = new Option<string>("--warm-up") { Description = "Samples of a process younger than this are left out of the growth check", DefaultValueFactory = _ => "90s" };
        var positions = new Option<int>("--positions") { Description = "Positions per generation (greedy)", DefaultValueFactory = _ => 256 };
        var sessionTimeout = new Option<string>("--session-timeout") { Description = "A generation not done after this long counts as lost", DefaultValueFactory = _ => "5m" };
        var output = new Option<string>("--out") { Description = "Folder for soak.json and soak.svg", DefaultValueFactory = _ => "soak" };
        var command = new Command("soak", "Run a local swarm under churn (a random node killed and restarted every period) with concurrent generations; check every text, "
            + "sample every process's RSS, open files and threads; write soak.json and soak.svg; exit 1 when a text differed, a generation was lost without a typed error, or a resource grew")
            { model, duration, sessions, killPeriod, seed, nodes, replicas, sampleInterval, warmUp, positions, sessionTimeout, output };
        command.SetAction(async (parse, cancellation) =>
        {
            var outDir = Path.GetFullPath(parse.GetValue(output)!);
            var state = Path.Combine(Path.GetTempPath(), $"inferencemesh-soak-{Guid.NewGuid():N}");
            var options = new SoakOptions(parse.GetValue(model)!, state)
            {
                Duration = Durations.Parse(parse.GetValue(duration)!),
                Sessions = parse.GetValue(sessions),
                KillPeriod = Durations.Parse(parse.GetValue(killPeriod)!),
                Seed = parse.GetValue(seed),
                Nodes = parse.GetValue(nodes),
                Replicas = parse.GetValue(replicas),
                SampleInterval = Durations.Parse(parse.GetValue(sampleInterval)!),
                WarmUp = Durations.Parse(parse.GetValue(warmUp)!),
                Positions = parse.GetValue(positions),
                SessionTimeout = Durations.Parse(parse.GetValue(sessionTimeout)!),
            };
            var result = await SoakRunner.RunAsync(options, console.Error, cancellation);
            Directory.CreateDirectory(outDir);
            await File.WriteAllTextAsync(Path.Combine(outDir, "soak.json"), System.Text.Json.JsonSerializer.Serialize(result, new System.Text.Json.JsonSerializerOptions(CliJson.Options) { WriteIndented = true }), CancellationToken.None);
            await File.WriteAllTextAsync(Path.Combine(outDir, "soak.svg"), SoakPlot.Render(result), CancellationToken.None);
            // The state folder holds only node logs and keys once the swarm is down; a passing run leaves nothing behind.
            if (result.Passed) Directory.Delete(state, recursive: true);
            else console.Out.WriteLine($"node logs kept in {state}");
            WriteSummary(console.Out, result, outDir);
            return (int)(result.Passed ? ExitCode.Ok : ExitCode.Failure);
        });
        return command;
    }

    private static Command SoakVerdict(ICliConsole console)
    {
        var from = new Option<string>("--from") { Description = "A soak.json written by bench soak", Required = true };
        var warmUp = new Option<string?>("--warm-up") { Description = "Samples of a process younger than this are left out of the growth check (default: the soak's own)" };
        var output = new Option<string>("--out") { Description = "Folder for the re-judged soak.json and soak.svg", DefaultValueFactory = _ => "soak" };
        var command = new Command("soak-verdict", "Judge a recorded soak again with this version's growth rule (from its samples; nothing is rerun); "
            + "write soak.json and soak.svg; exit 1 as bench soak would") { from, warmUp, output };
        command.SetAction(async (parse, cancellation) =>
        {
            var path = parse.GetValue(from)!;
            SoakResult? recorded;
            try
            {
                recorded = JsonSerializer.Deserialize<SoakResult>(await File.ReadAllTextAsync(path, cancellation), CliJson.Options);
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                throw new MeshException(MeshErrorCode.InvalidArgument, $"{path} is not a soak.json: {e.Message}");
            }
            if (recorded?.Samples is null) throw new MeshException(MeshErrorCode.InvalidArgument, $"{path} is not a soak.json: it has no samples");
            var warm = parse.GetValue(warmUp) is { } text ? Durations.Parse(text) : TimeSpan.FromSeconds(recorded.WarmUpSeconds);
            var result = recorded with { WarmUpSeconds = warm.TotalSeconds, GrowthChecks = SoakRunner.CheckGrowth(recorded.Samples, new SoakOptions("unused", "unused") { WarmUp = warm }) };
            var outDir = Path.GetFullPath(parse.GetValue(output)!);
            Directory.CreateDirectory(outDir);
            await File.WriteAllTextAsync(Path.Combine(outDir, "soak.json"), JsonSerializer.Serialize(result, new JsonSerializerOptions(CliJson.Options) { WriteIndented = true }), CancellationToken.None);
            await File.WriteAllTextAsync(Path.Combine(outDir, "soak.svg"), SoakPlot.Render(result), CancellationToken.None);
            WriteSummary(console.Out, result, outDir);
            return (int)(result.Passed ? ExitCode.Ok : ExitCode.Failure);
        });
        return command;
    }

    private static Command Quantize(ICliConsole console)
    {
        var models = new Option<string>("--models")
        {
            Description = "Comma-separated label=directory pairs of imported models of one architecture, the exact one first (e.g. fp32=out/m,int8=out/m-int8,int4=out/m-int4)",
            Required = true,
        };
        var tokens = new Option<int>("--tokens") { Description = "Positions generated per timed run", DefaultValueFactory = _ => 64 };
        var repeat = new Option<int>("--repeat") { Description = "Timed rounds; each round runs every model once, in turn (median reported)", DefaultValueFactory = _ => 5 };
        var prompts = new Option<int>("--prompts") { Description = "Prompts of the quality comparison (seeded token ids)", DefaultValueFactory = _ => 8 };
        var compared = new Option<int>("--compare-tokens") { Description = "Greedy tokens continued per prompt in the quality comparison", DefaultValueFactory = _ => 32 };
        var runC = new Option<string?>("--run-c") { Description = "llama2.c's run.c source: built with gcc -Ofast -fopenmp -march=native and run on --llama2c's checkpoint, OpenMP on every core, as the C reference" };
        var checkpoint = new Option<string?>("--llama2c") { Description = "The first model's weights as a llama2.c checkpoint (model synth --llama2c-out), for --run-c" };
        var heldOut = new Option<string?>("--held-out")
        {
            Description = "Text file of held-out passages, one per non-empty line, for each model's perplexity (encoded with each model's tokenizer); without it, 8 seeded sequences of 64 token ids",
        };
        var memoryOf = new Option<string?>("--memory-of") { Description = "Internal: open this one model, generate --tokens positions and print the process's working set as JSON", Hidden = true };
        var command = new Command("quantize", "Exact against quantized models in one process: tokens/s, bytes on disk, working set, and quality against the first (greedy agreement, KL, logit error), and perplexity on held-out text")
        {
            models, tokens, repeat, prompts, compared, runC, checkpoint, heldOut, memoryOf,
        };
        command.SetAction(async (parse, cancellation) =>
        {
            if (parse.GetValue(memoryOf) is { } alone)
            {
                using (var local = LocalModel.Open(alone, ortOptions: new OrtExecutorOptions(SharedThreadPool: true)))
                {
                    foreach (var _ in local.Generate("", new GenerationOptions(parse.GetValue(tokens), 0f, StopAtEndOfText: false, MaxPositions: parse.GetValue(tokens)))) { }
                    GC.Collect();
                    using var self = Process.GetCurrentProcess();
                    console.Out.WriteLine(JsonSerializer.Serialize(new MemoryFigures(self.WorkingSet64, self.PeakWorkingSet64)));
                }
                return (int)ExitCode.Ok;
            }
            var entries = parse.GetValue(models)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Select(pair => pair.Split('=', 2) is [var label, var dir] ? (Label: label, Directory: dir)
                    : throw new MeshException(MeshErrorCode.InvalidArgument, $"'{pair}' is not label=directory"))
                .ToList();
            var positions = parse.GetValue(tokens);
            var runs = parse.GetValue(repeat);
            if (entries.Count < 1 || runs < 1 || positions < 2)
                throw new MeshException(MeshErrorCode.InvalidArgument, "give at least one model, --repeat of at least 1 and --tokens of at least 2");
            console.Out.WriteLine($"{positions} positions per run, median of {runs} alternating rounds, ONNX Runtime on the process's shared pool, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            console.Out.WriteLine();
            var options = new GenerationOptions(positions, 0f, StopAtEndOfText: false, MaxPositions: positions);

            // Memory in a fresh process per model: this one's working set keeps what earlier models freed.
            var memory = new List<(long Disk, MemoryFigures Figures)>();
            foreach (var (_, directory) in entries)
                memory.Add((Directory.GetFiles(directory, "*.onnx*").Sum(f => new FileInfo(f).Length), await MeasureAlone(directory, positions, cancellation)));

            var opened = new List<LocalModel>();
            try
            {
                foreach (var (_, directory) in entries)
                {
                    var local = LocalModel.Open(directory, ortOptions: new OrtExecutorOptions(SharedThreadPool: true));
                    opened.Add(local);
                    local.Generate("", options with { MaxTokens = Math.Min(16, positions) }).ToList();
                }
                var times = entries.Select(_ => new List<double>()).ToList();
                for (var r = 0; r < runs; r++)
                    for (var m = 0; m < opened.Count; m++)
                    {
                        cancellation.ThrowIfCancellationRequested();
                        var stopwatch = Stopwatch.StartNew();
                        foreach (var _ in opened[m].Generate("", options)) { }
                        times[m].Add(stopwatch.Elapsed.TotalMilliseconds / positions);
                    }
                var vocab = opened[0].Config.Vocab;
                var random = new Random(1);
                var promptIds = Enumerable.Range(0, parse.GetValue(prompts))
                    .Select(i => (IReadOnlyList<int>)Enumerable.Range(0, 4 + i % 5).Select(_ => random.Next(3, vocab)).ToList()).ToList();
                var passages = parse.GetValue(heldOut) is { } heldOutFile
                    ? File.ReadAllLines(heldOutFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToList()
                    : null;
                var seededIds = Enumerable.Range(0, 8).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, 64).Select(_ => random.Next(3, vocab)).ToList()).ToList();
                HeldOutPerplexity PerplexityOf(LocalModel local) =>
                    passages is null ? ModelComparison.Perplexity(local, seededIds) : ModelComparison.Perplexity(local, passages);
                console.Out.WriteLine($"| model | weights | bytes on disk | working set after a run | peak working set | tokens/s | ms/token (median) | min – max | top-1 agreement | greedy prefix kept | mean KL (nats) | max KL | max logit error | mean logit error | perplexity |");
                console.Out.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
                for (var m = 0; m < opened.Count; m++)
                {
                    var perToken = Statistics.Median(times[m]);
                    var quality = m == 0 ? "– | – | – | – | – | –" : Format(ModelComparison.Compare(opened[0], opened[m], promptIds, parse.GetValue(compared)));
                    var weights = Onnx.ModelStore.TryReadDescription(entries[m].Directory)?.Quantization ?? "exact";
                    console.Out.WriteLine($"| {entries[m].Label} | {weights} | {memory[m].Disk:N0} | {memory[m].Figures.WorkingSet:N0} | {memory[m].Figures.PeakWorkingSet:N0} | {1000 / perToken:F1} | {perToken:F3} | {times[m].Min():F3} – {times[m].Max():F3} | {quality} | {PerplexityOf(opened[m]).Perplexity:G5} |");
                }
                if (parse.GetValue(runC) is { } source)
                {
                    var weights = parse.GetValue(checkpoint) ?? throw new MeshException(MeshErrorCode.InvalidArgument, "--run-c needs --llama2c, the checkpoint of the first model's weights");
                    var tokenizer = Path.Combine(entries[0].Directory, Onnx.ModelStore.TokenizerFile);
                    var rates = new List<double>();
                    for (var r = 0; r < runs; r++) rates.Add(await RunLlama2c(source, weights, tokenizer, positions, cancellation));
                    var median = Statistics.Median(rates);
                    console.Out.WriteLine($"| run.c (llama2.c, gcc -Ofast -fopenmp -march=native, {Environment.ProcessorCount} OpenMP threads) | fp32 | {new FileInfo(weights).Length:N0} | – | – | {median:F1} | {1000 / median:F3} | {1000 / rates.Max():F3} – {1000 / rates.Min():F3} | – | – | – | – | – | – | – |");
                }
                console.Out.WriteLine();
                console.Out.WriteLine($"quality over {promptIds.Count} seeded prompts of 4–8 token ids, {parse.GetValue(compared)} greedy tokens each, against {entries[0].Label}; "
                    + "memory measured in a fresh process per model (open, one run of --tokens positions)");
                var scored = PerplexityOf(opened[0]);
                console.Out.WriteLine(passages is null
                    ? $"perplexity over {scored.Sequences} seeded sequences of 64 token ids ({scored.Tokens} predicted tokens)"
                    : $"perplexity over the {scored.Sequences} passages of {parse.GetValue(heldOut)} ({scored.Tokens} predicted tokens, {entries[0].Label}'s tokenizer)");
            }
            finally
            {
                foreach (var local in opened) local.Dispose();
            }
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static void WriteSummary(TextWriter output, SoakResult result, string outDir)
    {
        output.WriteLine($"soak {result.StartedAt:yyyy-MM-dd HH:mm} UTC, {result.Machine}: {result.Nodes} nodes ({result.Replicas} servers per block), {result.Sessions} sessions, "
            + $"a node killed every {result.KillPeriodSeconds:0} s, seed {result.Seed}, {result.ElapsedSeconds / 60:F1} min");
        output.WriteLine($"generations: {result.Completed} completed, {result.Exact} exact, {result.Mismatches.Count} differed; {result.Failures.Count} failed, "
            + $"{result.LostWithoutTypedError} without a typed error; {result.Recoveries} route recoveries; {result.Kills.Count} kills ({result.Kills.Count(k => k.Error is not null)} restarts failed)");
        foreach (var (code, count) in result.Failures.GroupBy(f => f.Code ?? f.Type).Select(g => (g.Key, g.Count())))
            output.WriteLine($"  failed with {code}: {count}");
        var counters = result.Samples.Select(s => s.Counters).OfType<SoakResult.NodeCounters>().ToList();
        if (counters.Count > 0)
            output.WriteLine($"node counters ({counters.Count} scrapes): at most {counters.Max(c => c.SessionsOpen)} sessions open on a node, "
                + $"{counters.Max(c => c.KvReservedMiB):0.#} of {counters.Max(c => c.KvBudgetMiB):0.#} MiB KV reserved, {counters.Max(c => c.Connections)} connections");
        output.WriteLine("| process | resource | 2nd-third median | last-third median | limit | |");
        output.WriteLine("|---|---|---:|---:|---:|---|");
        foreach (var g in result.GrowthChecks)
            output.WriteLine(g.Judged
                ? $"| {g.Process} | {g.Resource} | {g.SecondThirdMedian:0.#} | {g.LastThirdMedian:0.#} | {g.Limit:0.#} | {(g.Grew ? "GREW" : "flat")} |"
                : $"| {g.Process} | {g.Resource} | – | – | – | too few warm samples |");
        output.WriteLine($"{(result.Passed ? "PASSED" : "FAILED")}; wrote {Path.Combine(outDir, "soak.json")} and {Path.Combine(outDir, "soak.svg")}");
    }

    private sealed record MemoryFigures(long WorkingSet, long PeakWorkingSet);

    /// <summary>
    /// Builds llama2.c's <c>run.c</c> (once per source, beside a copy in the temp directory) and returns the tokens/s it reports for
    /// a greedy run of <paramref name="positions"/> steps from an empty prompt. Safe to cancel (the process is killed).
    /// </summary>
    private static async Task<double> RunLlama2c(string source, string checkpoint, string tokenizer, int positions, CancellationToken cancellation)
    {
        var binary = Path.Combine(Path.GetTempPath(), $"inferencemesh-run-c-{Manifest.Sha256Hex(source)[..16]}");
        if (!File.Exists(binary))
        {
            var (code, _, error) = await RunProcess("gcc", ["-Ofast", "-fopenmp", "-march=native", source, "-lm", "-o", binary], cancellation);
            if (code != 0)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"gcc could not build {source}: {error.Trim()}");
        }
        var (exit, output, errors) = await RunProcess(binary, [checkpoint, "-z", tokenizer, "-t", "0", "-n", positions.ToString()], cancellation);
        var line = (output + errors).Split('\n').FirstOrDefault(l => l.StartsWith("achieved tok/s:", StringComparison.Ordinal));
        if (exit != 0 || line is null)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"run.c failed or printed no speed: {errors.Trim()}");
        return double.Parse(line["achieved tok/s:".Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static async Task<(int Code, string Output, string Error)> RunProcess(string file, string[] arguments, CancellationToken cancellation)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.Environment["OMP_NUM_THREADS"] = Environment.ProcessorCount.ToString();
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"could not start {file}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new MeshException(MeshErrorCode.InvalidArgument, $"could not start {file}: {e.Message}", e);
        }
        using (process)
        {
            try
            {
                var error = process.StandardError.ReadToEndAsync(cancellation);
                var output = await process.StandardOutput.ReadToEndAsync(cancellation);
                await process.WaitForExitAsync(cancellation);
                return (process.ExitCode, output, await error);
            }
            finally
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>Runs this CLI's <c>bench quantize --memory-of</c> on one model and reads its figures back. Safe to cancel (the process is killed).</summary>
    private static async Task<MemoryFigures> MeasureAlone(string directory, int positions, CancellationToken cancellation)
    {
        var self = NodeLauncher.SelfCommand();
        var start = new ProcessStartInfo(self[0], [.. self.Skip(1), "bench", "quantize", "--models", "unused=.", "--memory-of", directory, "--tokens", positions.ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new MeshException(MeshErrorCode.InvalidArgument, "could not start a process to measure memory");
        try
        {
            var error = process.StandardError.ReadToEndAsync(cancellation);
            var output = await process.StandardOutput.ReadToEndAsync(cancellation);
            await process.WaitForExitAsync(cancellation);
            if (process.ExitCode != 0)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"measuring {directory} alone failed: {(await error).Trim()}");
            return JsonSerializer.Deserialize<MemoryFigures>(output.Trim().Split('\n')[^1])
                ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"measuring {directory} alone printed no figures");
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    private static string Format(QuantizationQuality q) =>
        $"{q.Top1Agreement:P1} | {q.GreedyPrefixAgreement:P1} | {q.MeanKl:G3} | {q.MaxKl:G3} | {q.MaxLogitError:G3} | {q.MeanLogitError:G3}";


    private static Command Mesh(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Imported model directory (model.onnx)", Required = true };
        var nodes = new Option<int>("--nodes") { Description = "Serving nodes in the loopback swarm", DefaultValueFactory = _ => 3 };
        var tokens = new Option<int>("--tokens") { Description = "Positions per generation", DefaultValueFactory = _ => 64 };
        var repeat = new Option<int>("--repeat") { Description = "Timed generations per configuration (median reported)", DefaultValueFactory = _ => 3 };
        var delays = new Option<string>("--link-delays") { Description = "Comma-separated one-way link delays to measure, e.g. 0,20ms", DefaultValueFactory = _ => "0,20ms" };
        var sessions = new Option<string>("--sessions") { Description = "Concurrent session counts for the aggregate throughput", DefaultValueFactory = _ => "1,4,16" };
        var threads = new Option<int>("--node-threads") { Description = "ONNX Runtime threads per stage run on each node (0: one per core)", DefaultValueFactory = _ => 1 };
        var command = new Command("mesh", "Per-token latency in one process against a loopback swarm (chained and relayed), with emulated link delay, and aggregate tokens/s") { model, nodes, tokens, repeat, delays, sessions, threads };
        command.SetAction(async (parse, cancellation) =>
        {
            var directory = parse.GetValue(model)!;
            var positions = parse.GetValue(tokens);
            var runs = parse.GetValue(repeat);
            var nodeCount = parse.GetValue(nodes);
            var options = new GenerationOptions(positions, 0f, StopAtEndOfText: false, MaxPositions: positions);
            console.Out.WriteLine($"model {directory}, {nodeCount} nodes on loopback, {positions} positions per generation, median of {runs}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            console.Out.WriteLine();

            double local;
            using (var single = LocalModel.Open(directory))
            {
                single.Generate("", options with { MaxTokens = 8, MaxPositions = 8 }).ToList();
                local = Median(runs, () => single.Generate("", options).Count()) / positions;
            }
            console.Out.WriteLine("| configuration | link delay (one way) | ms/token | floor ms/token | over floor | client bytes received per token |");
            console.Out.WriteLine("|---|---:|---:|---:|---:|---:|");
            console.Out.WriteLine($"| one process (unsplit) | – | {local:F3} | – | – | – |");

            foreach (var delayText in parse.GetValue(delays)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var delay = Durations.Parse(delayText);
                var state = Path.Combine(Path.GetTempPath(), $"inferencemesh-bench-{Guid.NewGuid():N}");
                var swarm = await LocalSwarm.StartAsync(new SwarmSettings(nodeCount, delayText, "ort", 64, 1024, parse.GetValue(threads), Replicas: 1), directory, state, new WriterCliConsole(TextWriter.Null, console.Error), cancellation);
                try
                {
                    // Verification on (the default) and off; off, also with servers keeping the outputs they push on.
                    var configurations = new (RouteMode Mode, VerifyMode Verify, bool Keep)[]
                    {
                        (RouteMode.Chained, VerifyMode.Sample, false), (RouteMode.Relayed, VerifyMode.Sample, false),
                        (RouteMode.Chained, VerifyMode.Off, false), (RouteMode.Chained, VerifyMode.Off, true),
                    };
                    foreach (var (mode, verify, keep) in configurations)
                    {
                        await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = state, Mode = mode, LinkDelay = delay, Verify = verify, ServersKeepOutputs = keep }, cancellation);
                        int routeLength;
                        await using (var probe = await client.OpenSessionAsync(8, cancellation)) routeLength = probe.Route.Count;
                        await client.GenerateAsync("", options with { MaxTokens = 8, MaxPositions = 8 }, cancellation).CountAsync(cancellation);
                        // Route planning and session opening happen once per generation; time the steps alone.
                        var receivedBefore = client.Traffic.BytesReceived;
                        var perToken = await MedianAsync(runs, async () =>
                        {
                            await using var session = await client.OpenSessionAsync(positions, cancellation);
                            var watch = Stopwatch.StartNew();
                            await new TextGenerator(client.Tokenizer, positions).GenerateAsync("", options, session.StepAsync, cancellation).CountAsync(cancellation);
                            return watch.Elapsed.TotalMilliseconds;
                        }) / positions;
                        // Whole frames (commitments included) over the timed generations, session opening and closing included.
                        var receivedPerToken = (double)(client.Traffic.BytesReceived - receivedBefore) / (runs * positions);
                        var hops = mode == RouteMode.Chained ? routeLength + 1 : 2 * routeLength;
                        var floor = local + hops * delay.TotalMilliseconds;
                        var label = $"{mode.ToString().ToLowerInvariant()}{(verify == VerifyMode.Off ? ", verify off" : "")}{(keep ? ", servers keep outputs" : "")}";
                        console.Out.WriteLine($"| {nodeCount}-node swarm, {label} ({routeLength} servers, {hops} transfers) | {delayText} | {perToken:F3} | {floor:F3} | {(perToken / floor - 1) * 100:+0.0;-0.0}% | {receivedPerToken:F0} |");
                        if (delay == TimeSpan.Zero)
                            console.Out.WriteLine($"| ↳ mesh overhead per transfer (loopback, {label}) | 0 | {(perToken - local) / hops:F3} | – | – | – |");
                    }
                    if (delay == TimeSpan.Zero)
                    {
                        console.Out.WriteLine();
                        console.Out.WriteLine("| concurrent sessions (chained) | aggregate tokens/s | ms/token per session |");
                        console.Out.WriteLine("|---:|---:|---:|");
                        await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = state, LinkDelay = delay }, cancellation);
                        foreach (var count in parse.GetValue(sessions)!.Split(',').Select(int.Parse))
                        {
                            var watch = Stopwatch.StartNew();
                            var generated = await Task.WhenAll(Enumerable.Range(0, count).Select(_ => client.GenerateAsync("", options, cancellation).CountAsync(cancellation).AsTask()));
                            var seconds = watch.Elapsed.TotalSeconds;
                            console.Out.WriteLine($"| {count} | {count * positions / seconds:F1} | {seconds * 1000 / positions:F2} |");
                        }
                        console.Out.WriteLine();
                    }
                }
                finally
                {
                    await LocalSwarm.StopAsync(state);
                    Directory.Delete(state, recursive: true);
                }
            }
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Batching(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Imported model directory (model.onnx)", Required = true };
        var nodes = new Option<int>("--nodes") { Description = "Serving nodes in the loopback swarm", DefaultValueFactory = _ => 3 };
        var tokens = new Option<int>("--tokens") { Description = "Positions per generation", DefaultValueFactory = _ => 32 };
        var sessions = new Option<string>("--sessions") { Description = "Concurrent session counts", DefaultValueFactory = _ => "1,4,16,64" };
        var batches = new Option<string>("--max-batch") { Description = "Comma-separated node --max-batch settings to compare (1: batching off)", DefaultValueFactory = _ => "1,64" };
        var rounds = new Option<int>("--rounds") { Description = "Times each setting is measured, alternating between settings (median reported)", DefaultValueFactory = _ => 2 };
        var threads = new Option<int>("--node-threads") { Description = "ONNX Runtime threads per stage run on each node (0: one per core)", DefaultValueFactory = _ => 1 };
        var command = new Command("batching", "Aggregate tokens/s and per-session latency of concurrent greedy sessions through a loopback swarm, with each node's continuous batching at several --max-batch settings, side by side") { model, nodes, tokens, sessions, batches, rounds, threads };
        command.SetAction(async (parse, cancellation) =>
        {
            var directory = parse.GetValue(model)!;
            var positions = parse.GetValue(tokens);
            var nodeCount = parse.GetValue(nodes);
            var counts = parse.GetValue(sessions)!.Split(',').Select(int.Parse).ToList();
            var settings = parse.GetValue(batches)!.Split(',').Select(int.Parse).ToList();
            var options = new GenerationOptions(positions, 0f, StopAtEndOfText: false, MaxPositions: positions);
            // One client holds every session, and a node lets one peer hold KvSharePerPeer (half) of its sessions.
            var maxSessions = Math.Max(64, 2 * counts.Max());
            var measured = settings.ToDictionary(b => b, _ => counts.ToDictionary(c => c, _ => (Rates: new List<double>(), Latencies: new List<double>(), Batch: new List<double>(), Run: new List<double>())));
            console.Out.WriteLine($"model {directory}, {nodeCount} nodes on loopback (chained), {positions} positions per greedy generation, median of {parse.GetValue(rounds)} rounds alternating --max-batch {string.Join('/', settings)}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
            console.Out.WriteLine();
            for (var round = 0; round < parse.GetValue(rounds); round++)
                foreach (var batch in settings)
                {
                    var state = Path.Combine(Path.GetTempPath(), $"inferencemesh-bench-{Guid.NewGuid():N}");
                    var swarm = await LocalSwarm.StartAsync(new SwarmSettings(nodeCount, "0", "ort", maxSessions, 1024, parse.GetValue(threads), Replicas: 1, Metrics: true, MaxBatch: batch), directory, state, new WriterCliConsole(TextWriter.Null, console.Error), cancellation);
                    try
                    {
                        await using var client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = state }, cancellation);
                        await client.GenerateAsync("", options with { MaxTokens = 8, MaxPositions = 8 }, cancellation).CountAsync(cancellation);
                        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
                        foreach (var count in counts)
                        {
                            var before = await ScrapeAsync(http, swarm, cancellation);
                            var watch = Stopwatch.StartNew();
                            var perSession = await Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
                            {
                                var own = Stopwatch.StartNew();
                                await client.GenerateAsync("", options, cancellation).CountAsync(cancellation);
                                return own.Elapsed.TotalMilliseconds / positions;
                            }));
                            measured[batch][count].Rates.Add(count * positions / watch.Elapsed.TotalSeconds);
                            measured[batch][count].Latencies.Add(Statistics.Median(perSession));
                            var after = await ScrapeAsync(http, swarm, cancellation);
                            double Delta(string name) => after.GetValueOrDefault(name) - before.GetValueOrDefault(name);
                            measured[batch][count].Batch.Add(Delta("inferencemesh_node_batched_steps_total") / Math.Max(1, Delta("inferencemesh_node_batches_total")));
                            measured[batch][count].Run.Add(Delta("inferencemesh_node_executor_batched_rows_total") / Math.Max(1, Delta("inferencemesh_node_executor_batched_runs_total")));
                        }
                    }
                    finally
                    {
                        await LocalSwarm.StopAsync(state);
                        Directory.Delete(state, recursive: true);
                    }
                }
            console.Out.WriteLine($"| sessions | {string.Join(" | ", settings.Select(b => $"--max-batch {b}: tokens/s (× 1 session) | ms/token per session | steps per round / per batched run"))} |");
            console.Out.WriteLine($"|---:|{string.Concat(settings.Select(_ => "---:|---:|---:|"))}");
            foreach (var count in counts)
            {
                var cells = settings.Select(b =>
                {
                    var rate = Statistics.Median(measured[b][count].Rates);
                    var single = Statistics.Median(measured[b][counts[0]].Rates);
                    return $"{rate:F1} ({rate / single:F1}×) | {Statistics.Median(measured[b][count].Latencies):F2} | {Statistics.Median(measured[b][count].Batch):F1} / {Statistics.Median(measured[b][count].Run):F1}";
                });
                console.Out.WriteLine($"| {count} | {string.Join(" | ", cells)} |");
            }
            return (int)ExitCode.Ok;
        });
        return command;
    }

    /// <summary>The unlabelled counters and gauges of every node of the swarm, summed over nodes.</summary>
    private static async Task<Dictionary<string, double>> ScrapeAsync(HttpClient http, SwarmState swarm, CancellationToken cancellation)
    {
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var node in swarm.Nodes)
        {
            if (node.MetricsUrl is null) continue;
            var text = await http.GetStringAsync(node.MetricsUrl, cancellation);
            foreach (var line in text.Split('\n'))
            {
                var parts = line.Split(' ');
                if (parts.Length == 2 && !line.StartsWith('#') && !parts[0].Contains('{')
                    && double.TryParse(parts[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var value))
                    sums[parts[0]] = sums.GetValueOrDefault(parts[0]) + value;
            }
        }
        return sums;
    }

    private static double Median(int runs, Action run)
    {
        var times = new List<double>();
        for (var r = 0; r < runs; r++)
        {
            var watch = Stopwatch.StartNew();
            run();
            times.Add(watch.Elapsed.TotalMilliseconds);
        }
        return Statistics.Median(times);
    }

    /// <summary>Median of what <paramref name="run"/> reports it measured, in milliseconds.</summary>
    private static async Task<double> MedianAsync(int runs, Func<Task<double>> run)
    {
        var times = new List<double>();
        for (var r = 0; r < runs; r++) times.Add(await run());
        return Statistics.Median(times);
    }

    private static Command Stage(ICliConsole console)
    {
        var dim = new Option<int>("--dim") { Description = "Model width of the synthetic stage", DefaultValueFactory = _ => 256 };
        var blocks = new Option<int>("--blocks") { Description = "Blocks in the stage", DefaultValueFactory = _ => 4 };
        var heads = new Option<int>("--heads") { Description = "Attention heads (kv-heads = heads / 2)", DefaultValueFactory = _ => 8 };
        var steps = new Option<int>("--steps") { Description = "Timed decode steps per executor", DefaultValueFactory = _ => 16 };
        var executors = new Option<string>("--executors") { Description = "Comma-separated: ort1 (ONNX Runtime, 1 thread), ort (all cores), ilgpu", DefaultValueFactory = _ => "ort1,ort,ilgpu" };
        var command = new Command("stage", "Decode speed of one synthetic block stage on each executor, and TensorPrimitives matrix-vector products of the same weights, side by side") { dim, blocks, heads, steps, executors };
        command.SetAction((parse, cancellation) =>
        {
            var width = parse.GetValue(dim);
            var headCount = parse.GetValue(heads);
            var hidden = (width * 8 / 3 + 63) / 64 * 64;
            var config = new ModelConfig(width, hidden, parse.GetValue(blocks), headCount, Math.Max(1, headCount / 2), 512, 512, 1e-5f, 10000f);
            var model = Onnx.Import.LlamaOnnxBuilder.Build(Onnx.Import.LlamaWeights.Synthetic(config, 1), "bench");
            var stage = Onnx.Split.GraphSplitter.Split(model, [new BlockRange(0, config.Layers)]).Single(s => s.Descriptor.Kind == StageKind.Blocks);
            var bytes = Google.Protobuf.MessageExtensions.ToByteArray(stage.Model);
            var timedSteps = parse.GetValue(steps);
            console.Out.WriteLine($"synthetic stage: {config.Layers} blocks, dim {width}, ffn {hidden}, {headCount}/{config.KvHeads} heads; {timedSteps} decode steps after an 8-position prefill; {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            console.Out.WriteLine();
            console.Out.WriteLine("| executor | ms per token | tokens/s |");
            console.Out.WriteLine("|---|---:|---:|");
            foreach (var name in parse.GetValue(executors)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                cancellation.ThrowIfCancellationRequested();
                using var factory = new StageExecutorFactory(name == "ilgpu" ? ExecutorKind.Ilgpu : ExecutorKind.Ort);
                using IStageExecutor executor = name switch
                {
                    "ort1" => new OrtStageExecutor(stage.Descriptor, bytes, new OrtExecutorOptions(IntraOpThreads: 1)),
                    "ort" => new OrtStageExecutor(stage.Descriptor, bytes),
                    "ilgpu" => factory.Create(stage.Descriptor, bytes, 512),
                    _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown executor '{name}'; expected ort1, ort or ilgpu"),
                };
                var label = name switch { "ort1" => "ONNX Runtime, 1 thread", "ort" => "ONNX Runtime, all cores", _ => $"ILGPU ({factory.Choice.Backend})" };
                Compute.Ilgpu.IlgpuBenchmarks.StageDecode(executor, label, width, steps: 2);
                var measured = Compute.Ilgpu.IlgpuBenchmarks.StageDecode(executor, label, width, steps: timedSteps);
                console.Out.WriteLine($"| {label} | {measured.SecondsPerStep * 1e3:F3} | {measured.TokensPerSecond:F1} |");
            }
            // The block's seven weight matrices as plain matrix-vector products: what a hand-written CPU stage would cost at least.
            var perBlock = new[] { (width, width), (width, config.KvDim), (width, config.KvDim), (width, width), (width, hidden), (width, hidden), (hidden, width) }
                .Sum(shape => Compute.Ilgpu.IlgpuBenchmarks.TensorPrimitivesMatVec(shape.Item1, shape.Item2, 50).SecondsPerCall);
            console.Out.WriteLine($"| TensorPrimitives matrix-vector products of the stage's weights, 1 thread (no attention) | {perBlock * config.Layers * 1e3:F3} | {1 / (perBlock * config.Layers):F1} |");
            return Task.FromResult((int)ExitCode.Ok);
        });
        return command;
    }

    private static Command Generate(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Imported model directory (model.onnx)", Required = true };
        var stages = new Option<string>("--stages") { Description = "Comma-separated block-stage counts to compare with the unsplit model", DefaultValueFactory = _ => "1,3" };
        var tokens = new Option<int>("--tokens") { Description = "Positions generated per run", DefaultValueFactory = _ => 128 };
        var repeat = new Option<int>("--repeat") { Description = "Timed rounds; each round runs every configuration once, in turn (median reported)", DefaultValueFactory = _ => 5 };
        var threading = new Option<string>("--threading")
        {
            Description = "Comma-separated ONNX Runtime threading, each run for every configuration: shared (the process's one pool), per-session (a pool per stage, one thread per core chosen by ONNX Runtime, "
                + "no spinning), per-session-spinning (the same, spinning), per-session-n (a pool per stage of as many threads as cores, spinning)",
            DefaultValueFactory = _ => "shared",
        };
        var command = new Command("generate", "Greedy generation speed of the unsplit model against N block stages in one process, configurations alternating") { model, stages, tokens, repeat, threading };
        command.SetAction((parse, cancellation) =>
        {
            var directory = parse.GetValue(model)!;
            var stageCounts = parse.GetValue(stages)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList();
            var threadings = parse.GetValue(threading)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
            var positions = parse.GetValue(tokens);
            var runs = parse.GetValue(repeat);
            if (runs < 1 || positions < 2)
                throw new MeshException(MeshErrorCode.InvalidArgument, "--repeat must be at least 1 and --tokens at least 2");
            var modes = new Dictionary<string, OrtExecutorOptions>
            {
                ["shared"] = new(SharedThreadPool: true),
                ["per-session"] = new(AllowSpinning: false),
                ["per-session-spinning"] = new(AllowSpinning: true),
                ["per-session-n"] = new(IntraOpThreads: Environment.ProcessorCount, AllowSpinning: true),
            };
            if (threadings.Count == 0 || threadings.Any(t => !modes.ContainsKey(t)))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"--threading takes {string.Join(", ", modes.Keys)}");
            var configurations = new List<(string Label, int? Stages, OrtExecutorOptions Options)>();
            foreach (var count in new int?[] { null }.Concat(stageCounts.Select(c => (int?)c)))
                foreach (var mode in threadings)
                    configurations.Add(($"{(count is null ? "unsplit (one graph)" : $"head + {count} block stage{(count == 1 ? "" : "s")} + tail")}, {mode}", count, modes[mode]));
            console.Out.WriteLine($"model {directory}, {positions} positions per run, median of {runs} alternating rounds, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            console.Out.WriteLine();
            var options = new GenerationOptions(positions, 0f, StopAtEndOfText: false, MaxPositions: positions);
            var opened = new List<LocalModel>();
            try
            {
                foreach (var configuration in configurations)
                {
                    var local = LocalModel.Open(directory, configuration.Stages, ortOptions: configuration.Options);
                    opened.Add(local);
                    local.Generate("", options with { MaxTokens = Math.Min(16, positions) }).ToList();
                }
                var times = configurations.Select(_ => new List<double>()).ToList();
                for (var r = 0; r < runs; r++)
                    for (var c = 0; c < configurations.Count; c++)
                    {
                        cancellation.ThrowIfCancellationRequested();
                        var stopwatch = Stopwatch.StartNew();
                        foreach (var _ in opened[c].Generate("", options)) { }
                        times[c].Add(stopwatch.Elapsed.TotalMilliseconds / positions);
                    }
                console.Out.WriteLine("| configuration | stage boundaries per token | tokens/s | ms/token (median) | min – max |");
                console.Out.WriteLine("|---|---:|---:|---:|---:|");
                for (var c = 0; c < configurations.Count; c++)
                {
                    var perToken = Statistics.Median(times[c]);
                    console.Out.WriteLine($"| {configurations[c].Label} | {opened[c].Pipeline.Stages.Count - 1} | {1000 / perToken:F1} | {perToken:F3} | {times[c].Min():F3} – {times[c].Max():F3} |");
                }
                console.Out.WriteLine();
                console.Out.WriteLine("Where a token's time goes: mean µs per stage run over one more pass of each configuration (decode steps only)");
                console.Out.WriteLine();
                console.Out.WriteLine("| configuration | head | block stages (each) | tail | Σ stages |");
                console.Out.WriteLine("|---|---:|---:|---:|---:|");
                for (var c = 0; c < configurations.Count; c++)
                {
                    var perStage = ProfileStages(opened[c].Pipeline, positions);
                    var first = opened[c].Pipeline.Stages[0].Stage.Kind == StageKind.Head;
                    var blocks = perStage.Where((_, i) => opened[c].Pipeline.Stages[i].Stage.Kind == StageKind.Blocks).ToList();
                    var head = first ? $"{perStage[0]:F0}" : "–";
                    var tail = opened[c].Pipeline.Stages[^1].Stage.Kind == StageKind.Tail ? $"{perStage[^1]:F0}" : "–";
                    var blockText = blocks.Count == 0 ? $"{perStage.Sum():F0} (whole graph)" : string.Join(" / ", blocks.Select(b => b.ToString("F0")));
                    console.Out.WriteLine($"| {configurations[c].Label} | {head} | {blockText} | {tail} | {perStage.Sum():F0} |");
                }
            }
            finally
            {
                foreach (var local in opened) local.Dispose();
            }
            return Task.FromResult((int)ExitCode.Ok);
        });
        return command;
    }

    /// <summary>Mean µs of each stage's run over the decode steps of one session of token 1 (prefill of one position not counted).</summary>
    private static double[] ProfileStages(StagePipeline pipeline, int positions)
    {
        var sessionId = Guid.NewGuid().ToString("N");
        var totals = new double[pipeline.Stages.Count];
        try
        {
            for (var position = 0; position < positions; position++)
            {
                var activation = TensorData.FromInt64s([1, 1], [1]);
                for (var s = 0; s < pipeline.Stages.Count; s++)
                {
                    var started = Stopwatch.GetTimestamp();
                    activation = pipeline.Stages[s].Run(sessionId, activation, position);
                    if (position > 0) totals[s] += Stopwatch.GetElapsedTime(started).TotalMicroseconds;
                }
            }
        }
        finally
        {
            pipeline.CloseSession(sessionId);
        }
        return totals.Select(t => t / (positions - 1)).ToArray();
    }
}
