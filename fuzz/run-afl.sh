#!/usr/bin/env bash
# Offline coverage-guided fuzzing: builds the targets, instruments the parsers' assemblies with SharpFuzz,
# and runs AFL++ on each target named (all when none) for SECONDS each (default 300), one after another.
# Findings land in $OUT/<target>/default/crashes and hangs; the summary line per target is printed at the end.
# Usage: fuzz/run-afl.sh [target...]   (env: SECONDS_PER_TARGET, OUT=/tmp/inferencemesh-afl)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/inferencemesh-afl}"
seconds="${SECONDS_PER_TARGET:-300}"
bin="$out/bin"
command -v afl-fuzz >/dev/null || { echo "error: afl-fuzz not found (Debian: apt-get install afl++)" >&2; exit 1; }
mkdir -p "$out"
if [ ! -x "$out/tools/sharpfuzz" ]; then
  dotnet tool install --tool-path "$out/tools" SharpFuzz.CommandLine --version 2.3.0 >&2
fi
rm -rf "$bin"
dotnet publish fuzz/InferenceMesh.Fuzz -c Release -o "$bin" -v q >&2
targets=("$@")
# Listed before instrumenting: instrumented code crashes when it runs outside afl-fuzz (no coverage map).
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(dotnet "$bin/InferenceMesh.Fuzz.dll" list)
for dll in InferenceMesh.Core InferenceMesh.P2P InferenceMesh.Protocol InferenceMesh.Onnx; do
  "$out/tools/sharpfuzz" "$bin/$dll.dll" >&2
done
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1
for t in "${targets[@]}"; do
  rm -rf "$out/$t"
  afl-fuzz -i "fuzz/corpus/$t" -o "$out/$t" -t 10000 -m none -V "$seconds" -- dotnet "$bin/InferenceMesh.Fuzz.dll" afl "$t" > "$out/$t.log" 2>&1 || true
done
for t in "${targets[@]}"; do
  s="$out/$t/default/fuzzer_stats"
  [ -f "$s" ] || { echo "$t: no stats (see $out/$t.log)"; continue; }
  get() { grep "^$1 " "$s" | sed 's/.*: //'; }
  echo "$t: execs $(get execs_done), edges $(get edges_found)/$(get total_edges), corpus $(get corpus_count), crashes $(get saved_crashes), hangs $(get saved_hangs), run $(get run_time) s"
done
