using System.Globalization;
using System.Text;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>Markdown table and SVG chart of simulator figures.</summary>
public static class DhtSimReport
{
    private static string F(double v, string fmt = "0.##") => double.IsNaN(v) ? "–" : v.ToString(fmt, CultureInfo.InvariantCulture);

    public static string Markdown(IEnumerable<(int Size, SimFigures F, double Seconds)> rows)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| nodes (start) | phase | lookup | live nodes | lookups | success | hops median | hops p99 | messages / lookup | latency median (virtual ms) | wall time of the run (s) |");
        sb.AppendLine("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var (size, f, s) in rows)
            sb.AppendLine($"| {size} | {f.Phase} | {f.Kind} | {f.Nodes} | {f.Lookups} | {F(f.SuccessRate * 100, "0.0")} % | {F(f.HopsMedian)} | {F(f.HopsP99)} | {F(f.MessagesMean, "0.0")} | {F(f.LatencyMedianMs, "0")} | {F(s, "0")} |");
        return sb.ToString();
    }

    /// <summary>Hops (median and p99 of find-peer, before and after churn) against network size, log-scale x.</summary>
    public static string Svg(IReadOnlyList<(int Size, SimFigures F, double Seconds)> rows)
    {
        const int W = 640, H = 380, L = 60, R = 170, T = 40, B = 50;
        var sizes = rows.Select(r => r.Size).Distinct().Order().ToList();
        var maxHops = Math.Max(4, rows.Where(r => r.F.Kind == "find-peer").Max(r => double.IsNaN(r.F.HopsP99) ? 0 : r.F.HopsP99) + 1);
        double X(int n) => sizes.Count == 1 ? L + (W - L - R) / 2.0
            : L + (Math.Log10(n) - Math.Log10(sizes[0])) / (Math.Log10(sizes[^1]) - Math.Log10(sizes[0])) * (W - L - R);
        double Y(double h) => H - B - h / maxHops * (H - T - B);
        var sb = new StringBuilder();
        var ci = CultureInfo.InvariantCulture;
        sb.AppendLine(ci, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">");
        sb.AppendLine("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        sb.AppendLine(ci, $"<text x=\"{W / 2 - 60}\" y=\"22\" font-size=\"14\">DHT find-peer hops vs network size</text>");
        sb.AppendLine(ci, $"<line x1=\"{L}\" y1=\"{H - B}\" x2=\"{W - R}\" y2=\"{H - B}\" stroke=\"black\"/><line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{H - B}\" stroke=\"black\"/>");
        for (var h = 0; h <= maxHops; h++)
        {
            sb.AppendLine(ci, $"<line x1=\"{L}\" y1=\"{Y(h):0.#}\" x2=\"{W - R}\" y2=\"{Y(h):0.#}\" stroke=\"#ddd\"/>");
            sb.AppendLine(ci, $"<text x=\"{L - 8}\" y=\"{Y(h) + 4:0.#}\" text-anchor=\"end\">{h}</text>");
        }
        foreach (var n in sizes)
            sb.AppendLine(ci, $"<text x=\"{X(n):0.#}\" y=\"{H - B + 18}\" text-anchor=\"middle\">{n}</text>");
        sb.AppendLine(ci, $"<text x=\"{(L + W - R) / 2}\" y=\"{H - 10}\" text-anchor=\"middle\">nodes at start (log scale)</text>");
        sb.AppendLine(ci, $"<text x=\"16\" y=\"{(T + H - B) / 2}\" transform=\"rotate(-90 16 {(T + H - B) / 2})\" text-anchor=\"middle\">hops</text>");
        var series = new (string Phase, bool P99, string Color, string Dash)[]
        {
            ("before churn", false, "#1f77b4", ""), ("before churn", true, "#1f77b4", "6 4"),
            ("after churn", false, "#d62728", ""), ("after churn", true, "#d62728", "6 4"),
        };
        var ly = T + 10;
        foreach (var (phase, p99, color, dash) in series)
        {
            var pts = rows.Where(r => r.F.Kind == "find-peer" && r.F.Phase == phase).OrderBy(r => r.Size)
                .Select(r => (X(r.Size), Y(p99 ? r.F.HopsP99 : r.F.HopsMedian))).ToList();
            if (pts.Count == 0) continue;
            var d = string.Join(" ", pts.Select(p => string.Format(ci, "{0:0.#},{1:0.#}", p.Item1, p.Item2)));
            // before churn drawn wide and pale, after churn narrow on top: equal values stay visible
            var width = phase == "before churn" ? 6 : 2;
            var opacity = phase == "before churn" ? 0.45 : 1;
            sb.AppendLine(ci, $"<polyline points=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-opacity=\"{opacity}\" stroke-dasharray=\"{dash}\"/>");
            foreach (var (x, y) in pts)
                sb.AppendLine(ci, $"<circle cx=\"{x:0.#}\" cy=\"{y:0.#}\" r=\"3\" fill=\"{color}\"/>");
            sb.AppendLine(ci, $"<line x1=\"{W - R + 12}\" y1=\"{ly}\" x2=\"{W - R + 40}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"{width}\" stroke-opacity=\"{opacity}\" stroke-dasharray=\"{dash}\"/>");
            sb.AppendLine(ci, $"<text x=\"{W - R + 46}\" y=\"{ly + 4}\">{(p99 ? "p99" : "median")}, {phase}</text>");
            ly += 20;
        }
        sb.AppendLine("</svg>");
        return sb.ToString();
    }
}
