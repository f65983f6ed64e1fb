using Spectre.Console;

namespace InferenceMesh.Cli;

/// <summary>Where a person waits (model load, swarm start): a spinner in an interactive terminal, one plain line on stderr otherwise.</summary>
public static class Progress
{
    /// <param name="plainLine">Whether to write <paramref name="what"/> as a line when not interactive (off where the wait is short and stderr is kept for the one error line).</param>
    public static async Task<T> RunAsync<T>(ICliConsole console, string what, Func<Task<T>> run, bool plainLine = true)
    {
        if (!console.IsInteractive)
        {
            if (plainLine) console.Error.WriteLine(what);
            return await run();
        }
        return await AnsiConsole.Status().StartAsync(what, _ => run());
    }

    public static Task RunAsync(ICliConsole console, string what, Func<Task> run) =>
        RunAsync(console, what, async () =>
        {
            await run();
            return true;
        });

    public static T Run<T>(ICliConsole console, string what, Func<T> run, bool plainLine = true) =>
        RunAsync(console, what, () => Task.FromResult(run()), plainLine).GetAwaiter().GetResult();
}
