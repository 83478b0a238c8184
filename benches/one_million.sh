#!/usr/bin/env bash
# Wall time and peak memory of `apisnap run` on 1,000,000 sandbox records (page size 1000),
# to Parquet and to CSV. Usage: bash benches/one_million.sh [RECORDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
records=${1:-1000000}
cargo build --release --manifest-path "$root/Cargo.toml" >/dev/null
bin="$root/target/release/apisnap"
work=$(mktemp -d)
trap 'kill $sandbox 2>/dev/null || true; rm -rf "$work"' EXIT
cp -r "$root/jobs" "$work/"
cd "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" sandbox --port "$port" --records "$records" >/dev/null &
sandbox=$!
sleep 1
export APISNAP_PROVIDER_SEAL_METRICS__BASE_URL="http://127.0.0.1:$port/seal"
export SEAL_METRICS_EMAIL=analyst@example.com SEAL_METRICS_PASSWORD=sandbox-seal-password
export APISNAP_JOB_SEAL_METRICS_EVENTS__OUTPUT__DIR="$work/out/{run_id}"
for format in parquet csv; do
  if [ "$format" = csv ]; then
    sed -i 's/format = "parquet"/format = "csv"/; /compression = "zstd"/d' jobs/seal_metrics_events.toml
  fi
  /usr/bin/time -v "$bin" --log-level warn run seal_metrics_events 2>time.txt
  printf '%s: wall %s, peak RSS %s kB, user %s s, sys %s s\n' "$format" \
    "$(grep -oP 'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): \K.*' time.txt)" \
    "$(grep -oP 'Maximum resident set size \(kbytes\): \K.*' time.txt)" \
    "$(grep -oP 'User time \(seconds\): \K.*' time.txt)" \
    "$(grep -oP 'System time \(seconds\): \K.*' time.txt)"
done
