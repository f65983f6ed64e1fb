using System.Diagnostics;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// Waits, with a bound, for a condition that events on other threads or in other processes make true (a node process's
/// metrics, a DHT listing): where there is no event to await, the one place that polls.
/// </summary>
internal static class Poll
{
    /// <param name="intervalMs">Pause between checks; longer for conditions that are costly to check (a browser, an HTTP scrape).</param>
    public static Task UntilAsync(Func<bool> condition, string what, double seconds = 10, int intervalMs = 5) =>
        UntilAsync(() => Task.FromResult(condition()), what, seconds, intervalMs);

    /// <param name="condition">Checked until true; may read from another process.</param>
    /// <param name="detail">What the failure message adds about the last state seen.</param>
    public static async Task UntilAsync(Func<Task<bool>> condition, string what, double seconds = 10, int intervalMs = 5, Func<string>? detail = null)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed.TotalSeconds > seconds) Assert.Fail($"timed out after {seconds} s waiting for {what}{(detail is null ? "" : ": " + detail())}");
            await Task.Delay(intervalMs);
        }
    }
}
