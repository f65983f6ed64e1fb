using System.Diagnostics;

namespace InferenceMesh.Tests.Shared;

/// <summary>Waits, with a bound, for a condition that events on other threads make true.</summary>
internal static class Poll
{
    /// <param name="intervalMs">Pause between checks; longer for conditions that are costly to check (a browser, an HTTP scrape).</param>
    public static async Task UntilAsync(Func<bool> condition, string what, double seconds = 10, int intervalMs = 5)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed.TotalSeconds > seconds) Assert.Fail($"timed out after {seconds} s waiting for {what}");
            await Task.Delay(intervalMs);
        }
    }
}
