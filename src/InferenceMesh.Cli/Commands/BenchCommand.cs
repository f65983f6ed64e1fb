using System.CommandLine;
using System.Diagnostics;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Commands;

/// <summary><c>inferencemesh bench generate</c>: tokens/s of in-process generation, unsplit and split, side by side in one run.</summary>
public static class BenchCommand
{
    public static Command Create(ICliConsole console)
    {
        var command = new Command("bench", "Measure speed; prints a Markdown table");
        command.Subcommands.Add(Generate(console));
        return command;
    }

    private static Command Generate(ICliConsole console)
    {
        var model = new Option<string>("--model", "-m") { Description = "Imported model directory (model.onnx)", Required = true };
        var stages = new Option<string>("--stages") { Description = "Comma-separated block-stage counts to compare with the unsplit model", DefaultValueFactory = _ => "1,3" };
        var tokens = new Option<int>("--tokens") { Description = "Positions generated per run", DefaultValueFactory = _ => 128 };
        var repeat = new Option<int>("--repeat") { Description = "Timed runs per configuration (median reported)", DefaultValueFactory = _ => 5 };
        var command = new Command("generate", "Greedy generation speed of the unsplit model against N block stages in one process") { model, stages, tokens, repeat };
        command.SetAction((parse, cancellation) =>
        {
            var directory = parse.GetValue(model)!;
            var stageCounts = parse.GetValue(stages)!.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToList();
            var positions = parse.GetValue(tokens);
            var runs = parse.GetValue(repeat);
            if (runs < 1 || positions < 2)
                throw new MeshException(MeshErrorCode.InvalidArgument, "--repeat must be at least 1 and --tokens at least 2");
            console.Out.WriteLine($"model {directory}, {positions} positions per run, median of {runs} runs, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            console.Out.WriteLine();
            console.Out.WriteLine("| configuration | stage boundaries per token | tokens/s | ms/token |");
            console.Out.WriteLine("|---|---:|---:|---:|");
            var msPerToken = new Dictionary<int, double>();
            foreach (var count in new int?[] { null }.Concat(stageCounts.Select(c => (int?)c)))
            {
                cancellation.ThrowIfCancellationRequested();
                using var local = LocalModel.Open(directory, count);
                var options = new GenerationOptions(positions, 0f);
                local.Generate("", options with { MaxTokens = Math.Min(16, positions) }).ToList();
                var times = new List<double>();
                var generated = 0;
                for (var r = 0; r < runs; r++)
                {
                    var stopwatch = Stopwatch.StartNew();
                    var pieces = 0;
                    foreach (var _ in local.Generate("", options)) pieces++;
                    times.Add(stopwatch.Elapsed.TotalMilliseconds);
                    generated = Math.Max(generated, pieces);
                }
                times.Sort();
                var median = times[times.Count / 2];
                var perToken = median / positions;
                var boundaries = local.Pipeline.Stages.Count - 1;
                msPerToken[boundaries] = perToken;
                var label = count is null ? "unsplit (one graph)" : $"head + {count} block stage{(count == 1 ? "" : "s")} + tail";
                console.Out.WriteLine($"| {label} | {boundaries} | {1000 / perToken:F1} | {perToken:F3} |");
            }
            var most = msPerToken.Keys.Max();
            var fewestSplit = msPerToken.Keys.Where(k => k > 0).DefaultIfEmpty(0).Min();
            if (most > fewestSplit && fewestSplit > 0)
            {
                console.Out.WriteLine();
                console.Out.WriteLine($"one stage boundary: {(msPerToken[most] - msPerToken[fewestSplit]) / (most - fewestSplit) * 1000:F1} µs per token ({fewestSplit} → {most} boundaries)");
            }
            return Task.FromResult((int)ExitCode.Ok);
        });
        return command;
    }
}
