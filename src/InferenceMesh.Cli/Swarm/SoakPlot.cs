using System.Globalization;
using System.Net;
using System.Text;

namespace InferenceMesh.Cli.Swarm;

/// <summary>
/// Draws a soak's samples as a self-contained SVG: RSS, open files and threads over time, one panel each, a line
/// per process (broken where a node was restarted) and the kills marked as dashed red lines.
/// </summary>
public static class SoakPlot
{
    private const double Width = 960;
    private const double PanelHeight = 200;
    private const double Left = 70;
    private const double Right = 130;
    private const double Top = 50;
    private const double Gap = 40;
    private static readonly string[] Colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

    /// <summary>The SVG document for <paramref name="result"/>.</summary>
    public static string Render(SoakResult result)
    {
        var panels = new (string Title, Func<SoakResult.Sample, double> Value)[] { ("RSS (MiB)", s => s.RssMiB), ("open file descriptors", s => s.Fds), ("threads", s => s.Threads) };
        var height = Top + panels.Length * (PanelHeight + Gap) + 10;
        var xMax = Math.Max(result.ElapsedSeconds, 1);
        var processes = result.Samples.Select(s => s.Process).Distinct().Order(StringComparer.Ordinal).ToList();
        var svg = new StringBuilder();
        svg.Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{height}\" viewBox=\"0 0 {Width} {height}\" font-family=\"sans-serif\" font-size=\"11\">\n"));
        svg.Append(Invariant($"<rect width=\"{Width}\" height=\"{height}\" fill=\"white\"/>\n"));
        var title = $"soak {result.StartedAt:yyyy-MM-dd}: {result.Nodes} nodes, {result.Sessions} sessions, a node killed every {result.KillPeriodSeconds:0} s, {result.ElapsedSeconds / 60:0.#} min; "
            + $"{result.Exact}/{result.Completed} exact, {result.Failures.Count} failed ({result.LostWithoutTypedError} untyped)";
        svg.Append(Invariant($"<text x=\"{Left}\" y=\"20\" font-size=\"13\">{WebUtility.HtmlEncode(title)}</text>\n"));
        for (var p = 0; p < panels.Length; p++)
        {
            var (panelTitle, value) = panels[p];
            var y0 = Top + p * (PanelHeight + Gap);
            var yMax = Nice(result.Samples.Select(value).DefaultIfEmpty(1).Max() * 1.1);
            double X(double t) => Left + t / xMax * (Width - Left - Right);
            double Y(double v) => y0 + PanelHeight - v / yMax * PanelHeight;
            svg.Append(Invariant($"<text x=\"{Left}\" y=\"{y0 - 6}\" font-weight=\"bold\">{panelTitle}</text>\n"));
            svg.Append(Invariant($"<rect x=\"{Left}\" y=\"{y0}\" width=\"{Width - Left - Right}\" height=\"{PanelHeight}\" fill=\"none\" stroke=\"#999\"/>\n"));
            for (var i = 0; i <= 4; i++)
            {
                var v = yMax * i / 4;
                svg.Append(Invariant($"<line x1=\"{Left}\" y1=\"{Y(v):F1}\" x2=\"{Width - Right}\" y2=\"{Y(v):F1}\" stroke=\"#eee\"/><text x=\"{Left - 6}\" y=\"{Y(v) + 4:F1}\" text-anchor=\"end\">{v:0.#}</text>\n"));
            }
            var step = TimeStep(xMax);
            for (var t = 0.0; t <= xMax + 1e-9; t += step)
                svg.Append(Invariant($"<text x=\"{X(t):F1}\" y=\"{y0 + PanelHeight + 14}\" text-anchor=\"middle\">{Clock(t)}</text>\n"));
            foreach (var kill in result.Kills)
                svg.Append(Invariant($"<line x1=\"{X(kill.AtSeconds):F1}\" y1=\"{y0}\" x2=\"{X(kill.AtSeconds):F1}\" y2=\"{y0 + PanelHeight}\" stroke=\"#d62728\" stroke-dasharray=\"4,3\"/>\n"));
            if (p == 0)
                foreach (var kill in result.Kills)
                    svg.Append(Invariant($"<text x=\"{X(kill.AtSeconds) + 2:F1}\" y=\"{y0 + 10}\" fill=\"#d62728\" font-size=\"9\">{WebUtility.HtmlEncode(kill.Node.Replace("node-", "n", StringComparison.Ordinal))}</text>\n"));
            for (var i = 0; i < processes.Count; i++)
            {
                var color = Colors[i % Colors.Length];
                // A restarted node is a new process: its line starts again instead of joining the dead one's.
                foreach (var life in result.Samples.Where(s => s.Process == processes[i]).GroupBy(s => s.Pid))
                {
                    var points = string.Join(' ', life.OrderBy(s => s.AtSeconds).Select(s => Invariant($"{X(s.AtSeconds):F1},{Y(value(s)):F1}")));
                    svg.Append(Invariant($"<polyline points=\"{points}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.3\"/>\n"));
                }
                if (p == 0)
                    svg.Append(Invariant($"<line x1=\"{Width - Right + 12}\" y1=\"{Top + 10 + i * 16}\" x2=\"{Width - Right + 30}\" y2=\"{Top + 10 + i * 16}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{Width - Right + 34}\" y=\"{Top + 14 + i * 16}\">{WebUtility.HtmlEncode(processes[i])}</text>\n"));
            }
            if (p == 0)
                svg.Append(Invariant($"<line x1=\"{Width - Right + 12}\" y1=\"{Top + 10 + processes.Count * 16}\" x2=\"{Width - Right + 30}\" y2=\"{Top + 10 + processes.Count * 16}\" stroke=\"#d62728\" stroke-dasharray=\"4,3\"/><text x=\"{Width - Right + 34}\" y=\"{Top + 14 + processes.Count * 16}\">kill</text>\n"));
        }
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string Clock(double seconds) => seconds >= 120 ? $"{seconds / 60:0.#} min" : $"{seconds:0} s";

    /// <summary>A tick step giving 4 to 10 labels on the time axis.</summary>
    private static double TimeStep(double seconds) =>
        new[] { 10.0, 15, 30, 60, 120, 300, 600, 900, 1800, 3600 }.FirstOrDefault(s => seconds / s <= 10, 3600);

    /// <summary>The axis top: 1, 2 or 5 times a power of ten at or above <paramref name="value"/>.</summary>
    private static double Nice(double value)
    {
        var power = Math.Pow(10, Math.Floor(Math.Log10(Math.Max(value, 1e-9))));
        return new[] { 1.0, 2, 5, 10 }.Select(m => m * power).First(v => v >= value);
    }
}
