#!/usr/bin/env bash
# apisnap's performance matrix (issue #7): the sandbox's standard record, page size 1,000.
#
#   bash benches/matrix.sh [RECORDS] [BIG_RECORDS]      (defaults: 1000000 10000000)
#
# For 0 ms and 20 ms of sandbox latency per page, and concurrency 1 and 8, it measures two
# floors on the same pages (fetch and discard; fetch, parse the JSON and discard) and the
# real pipeline to Parquet and to CSV (decode, write parts, checkpoint, finalize). Then one
# Parquet run of BIG_RECORDS for memory, and `apisnap validate jobs/`. Each case runs the
# release binary under /usr/bin/time: wall, CPU (user + sys) and peak RSS of apisnap alone;
# the sandbox is another process on the same two cores. Prints a Markdown table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-1000000}
big=${2:-10000000}
cargo build --release --locked --manifest-path "$root/Cargo.toml" >/dev/null 2>&1
bin="$root/target/release/apisnap"
work=$(mktemp -d)
sandbox=""
trap '[ -n "$sandbox" ] && kill $sandbox 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/jobs/providers"
cp "$root/jobs/providers/seal_metrics.toml" "$work/jobs/providers/"
for format in parquet csv; do
  cat >"$work/jobs/bench_$format.toml" <<EOF
provider = "seal_metrics"
[endpoint]
path = "/stats/events"
records_pointer = "/data"
[pagination]
type = "offset"
page_size = 1000
[output]
format = "$format"
dir = "$work/out/{run_id}"
EOF
done
cd "$work"
export SEAL_METRICS_EMAIL=analyst@example.com SEAL_METRICS_PASSWORD=sandbox-seal-password

start_sandbox() { # records latency_ms
  [ -n "$sandbox" ] && kill "$sandbox" 2>/dev/null && wait "$sandbox" 2>/dev/null || true
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" sandbox --port "$port" --records "$1" --latency-ms "$2" >/dev/null &
  sandbox=$!
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done
  export APISNAP_PROVIDER_SEAL_METRICS__BASE_URL="http://127.0.0.1:$port/seal"
}

# Runs a command under /usr/bin/time; sets wall, cpu, rss_mb.
measure() {
  /usr/bin/time -f '%e %U %S %M' -o time.txt "$@" >out.txt 2>err.txt || {
    cat err.txt >&2
    exit 1
  }
  read -r wall user sys rss_kb <time.txt
  cpu=$(echo "$user + $sys" | bc)
  rss_mb=$(echo "scale=1; $rss_kb / 1024" | bc)
}

row() { # label records json_bytes fetch_wall parse_wall
  local rate mbs
  rate=$(echo "$2 / $wall" | bc)
  mbs=$(echo "scale=1; $3 / 1000000 / $wall" | bc)
  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$wall" "$rate" "$mbs" "$cpu" "$rss_mb" \
    "$(echo "scale=2; $wall / $4" | bc)" "$(echo "scale=2; $wall / $5" | bc)"
}

echo "| case | wall s | records/s | JSON MB/s | CPU s | peak RSS MB | × fetch floor | × parse floor |"
echo "|---|---|---|---|---|---|---|---|"
for latency in 0 20; do
  start_sandbox "$records" "$latency"
  for c in 1 8; do
    export APISNAP_JOB_BENCH_PARQUET__CONCURRENCY=$c APISNAP_JOB_BENCH_CSV__CONCURRENCY=$c
    measure "$bin" --log-level warn run --floor fetch bench_parquet
    fetch_wall=$wall
    bytes=$(grep -oP '\d+(?= bytes)' out.txt)
    row "$records, ${latency} ms, c=$c: fetch floor" "$records" "$bytes" "$fetch_wall" "$fetch_wall"
    measure "$bin" --log-level warn run --floor parse bench_parquet
    parse_wall=$wall
    row "$records, ${latency} ms, c=$c: parse floor" "$records" "$bytes" "$fetch_wall" "$parse_wall"
    for format in parquet csv; do
      measure "$bin" --log-level warn run "bench_$format"
      row "$records, ${latency} ms, c=$c: $format" "$records" "$bytes" "$fetch_wall" "$parse_wall"
      rm -rf "$work/out" "$work/state"
    done
  done
done

start_sandbox "$big" 0
export APISNAP_JOB_BENCH_PARQUET__CONCURRENCY=8
measure "$bin" --log-level warn run --floor fetch bench_parquet
fetch_wall=$wall
bytes=$(grep -oP '\d+(?= bytes)' out.txt)
measure "$bin" --log-level warn run --floor parse bench_parquet
parse_wall=$wall
measure "$bin" --log-level warn run bench_parquet
row "$big, 0 ms, c=8: parquet" "$big" "$bytes" "$fetch_wall" "$parse_wall"
rm -rf "$work/out" "$work/state"

start=$(date +%s%N)
for _ in $(seq 20); do "$bin" validate "$root/jobs" >/dev/null 2>&1; done
echo
echo "apisnap validate jobs/ (5 jobs): $(( ($(date +%s%N) - start) / 20000000 )) ms per run, mean of 20"
