#!/usr/bin/env bash
# A local graycast cluster in one command: a 3-member etcd cluster and 3 graycast nodes on
# loopback, their URLs printed; ctrl-c stops them all and removes their data.
#
#   scripts/cluster.sh                 # builds graycast with the etcd feature (release)
#   GRAYCAST_BIN=path/to/graycast scripts/cluster.sh   # uses a binary built with it
#   GRAYCAST_CLUSTER_PORT=18080 ...    # first graycast port (etcd uses 23790-23792, 23800-23802)
#
# Needs Debian's etcd-server (and protobuf-compiler to build graycast with etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "cluster.sh needs etcd: apt-get install etcd-server" >&2; exit 1; }
bin="${GRAYCAST_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --quiet -p graycast-server --features etcd
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/graycast"
fi
port="${GRAYCAST_CLUSTER_PORT:-18080}"
dir=$(mktemp -d)
pids=()
stop() {
  trap - EXIT INT TERM
  echo; echo "stopping the cluster"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT INT TERM

initial="e0=http://127.0.0.1:23800,e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802"
for i in 0 1 2; do
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token graycast-local \
    --log-level error >"$dir/e$i.log" 2>&1 &
  pids+=($!)
done
endpoints="http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792"
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:23790/health >/dev/null 2>&1 && break
  sleep 0.1
done

urls=()
for i in 0 1 2; do
  listen="127.0.0.1:$((port + i))"
  "$bin" --listen "$listen" --store etcd --etcd-endpoints "$endpoints" --node-name "node$i" \
    --data-dir "$dir/n$i" >"$dir/n$i.out" 2>"$dir/n$i.log" &
  pids+=($!)
  urls+=("http://$listen")
done
for url in "${urls[@]}"; do
  for _ in $(seq 150); do
    curl -sf "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
echo "etcd:     $endpoints"
echo "graycast: ${urls[*]}"
echo "SDK:      Client::builder().endpoint(\"${urls[0]}\").endpoint(\"${urls[1]}\").endpoint(\"${urls[2]}\")"
echo "logs:     $dir (removed on exit); ctrl-c stops everything"
wait
