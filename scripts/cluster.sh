#!/usr/bin/env bash
# A local graycast cluster in one command: a 3-member etcd cluster and 3 graycast nodes on
# loopback, their URLs printed; ctrl-c stops them all and removes their data.
#
#   scripts/cluster.sh [--] [GRAYCAST FLAGS...]
#
#   scripts/cluster.sh                 # builds graycast with the etcd feature (release)
#   scripts/cluster.sh -- --tokens tokens.toml --history-retain 50
#                                      # flags after the script's own (or after --) go to every node
#   GRAYCAST_BIN=path/to/graycast scripts/cluster.sh   # uses a binary built with it
#   GRAYCAST_CLUSTER_PORT=18080 ...    # first graycast port: nodes on it, +1 and +2
#   GRAYCAST_ETCD_PORT=23790 ...       # first etcd client port: members on it, +1 and +2
#   GRAYCAST_ETCD_PEER_PORT=23800 ...  # first etcd peer port (default: GRAYCAST_ETCD_PORT + 10)
#
# The script sets each node's --listen, --store, --etcd-endpoints, --node-name and --data-dir;
# give it any other flag. With --tls-cert the nodes serve https:// (the URLs printed say so).
# Needs Debian's etcd-server (and protobuf-compiler to build graycast with etcd).
set -euo pipefail
usage() { sed -n '2,17s/^# \{0,1\}//p' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --) shift ;;
esac
node_flags=("$@")
here=$PWD   # the nodes run here, so that relative paths in their flags mean what they say
bin="${GRAYCAST_BIN:-}"
case "$bin" in "" | /*) ;; *) [ -e "$bin" ] && bin="$here/$bin" ;; esac
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "cluster.sh needs etcd: apt-get install etcd-server" >&2; exit 1; }
case "$bin" in "" | /*) ;; *) bin="$PWD/$bin" ;; esac
if [ -z "$bin" ]; then
  cargo build --release --quiet -p graycast-server --features etcd
  bin="${CARGO_TARGET_DIR:-$PWD/target}/release/graycast"
fi
port="${GRAYCAST_CLUSTER_PORT:-18080}"
etcd_port="${GRAYCAST_ETCD_PORT:-23790}"
peer_port="${GRAYCAST_ETCD_PEER_PORT:-$((etcd_port + 10))}"
scheme=http
for flag in "${node_flags[@]}"; do
  case "$flag" in --tls-cert | --tls-cert=*) scheme=https ;; esac
done
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

initial=""
clients=()
for i in 0 1 2; do
  initial+="${initial:+,}e$i=http://127.0.0.1:$((peer_port + i))"
  clients+=("http://127.0.0.1:$((etcd_port + i))")
done
for i in 0 1 2; do
  client="${clients[$i]}" peer="http://127.0.0.1:$((peer_port + i))"
  etcd --name "e$i" --data-dir "$dir/e$i" \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token graycast-local \
    --log-level error >"$dir/e$i.log" 2>&1 &
  pids+=($!)
done
endpoints=$(IFS=,; echo "${clients[*]}")
healthy=""
for _ in $(seq 150); do
  curl -sf "${clients[0]}/health" >/dev/null 2>&1 && { healthy=1; break; }
  sleep 0.1
done
[ -n "$healthy" ] || { echo "etcd did not come up on ${clients[0]}:" >&2; cat "$dir"/e*.log >&2; exit 1; }

urls=()
nodes=()
for i in 0 1 2; do
  listen="127.0.0.1:$((port + i))"
  (cd "$here" && exec "$bin" --listen "$listen" --store etcd --etcd-endpoints "$endpoints" \
    --node-name "node$i" --data-dir "$dir/n$i" ${node_flags[@]+"${node_flags[@]}"}) \
    >"$dir/n$i.out" 2>"$dir/n$i.log" &
  pids+=($!)
  nodes+=($!)
  urls+=("$scheme://$listen")
done
for i in 0 1 2; do
  for _ in $(seq 150); do
    curl -sfk "${urls[$i]}/readyz" >/dev/null 2>&1 && break
    kill -0 "${nodes[$i]}" 2>/dev/null || { echo "node$i stopped:" >&2; cat "$dir/n$i.log" >&2; exit 1; }
    sleep 0.1
  done
done
echo "etcd:     $endpoints"
echo "graycast: ${urls[*]}"
echo "SDK:      Client::builder().endpoint(\"${urls[0]}\").endpoint(\"${urls[1]}\").endpoint(\"${urls[2]}\")"
echo "logs:     $dir (removed on exit); ctrl-c stops everything"
wait
