#!/usr/bin/env bash
# The whole test suite: the Rust workspace (unit, end-to-end, SDK, CLI, gray releases, a
# real etcd cluster, the README's examples), the REST API fuzzed from its OpenAPI document (schemathesis), the local
# cluster script, the web console and the OpenFeature web provider in a real headless
# Chromium, @graycast/client (client-js) in Node, and the packaging (scripts/packaging.sh:
# the systemd unit, the container image with buildah and podman). Installs what is
# missing: Debian's chromium, etcd-server, etcd-client, protobuf-compiler, openssl, jq and prometheus
# (for promtool) (as root),
# schemathesis and the OpenFeature OFREP provider (PyPI) and the pinned npm packages of
# web/tests, tests/ofrep and client-js.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the tests need Debian's ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
# promtool (Debian's prometheus) lints /metrics as Prometheus reads it.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing prometheus (for promtool)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "the tests need promtool: sudo apt-get install prometheus" >&2
    exit 1
  fi
fi
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  echo "== installing schemathesis (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
if ! python3 -c 'import openfeature.contrib.provider.ofrep' >/dev/null 2>&1; then
  echo "== installing the OpenFeature OFREP provider (PyPI), for tests/tests/ofrep.rs"
  python3 -m pip install --quiet --disable-pip-version-check -r tests/ofrep/requirements.txt
fi
if [ ! -d tests/ofrep/node_modules/@openfeature/ofrep-provider ] || [ tests/ofrep/package-lock.json -nt tests/ofrep/node_modules ]; then
  echo "== installing the OpenFeature OFREP provider (npm), for tests/tests/ofrep.rs"
  (cd tests/ofrep && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d client-js/node_modules/terser ] || [ client-js/package-lock.json -nt client-js/node_modules ]; then
  echo "== installing @graycast/client's dev packages (terser, ws)"
  (cd client-js && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -d web/tests/node_modules/playwright-core ] || [ web/tests/package-lock.json -nt web/tests/node_modules ]; then
  echo "== installing the browser tests' npm packages"
  (cd web/tests && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== cargo test --workspace"
cargo test --workspace --locked

cargo build -p graycast-server --locked --quiet
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== the API fuzzed from its OpenAPI document (schemathesis, every check)"
scripts/schemathesis.sh "$target_dir/debug/graycast" 100

echo "== scripts/cluster.sh (3 etcd members on ports of its own, 3 nodes given a token file): a write on one node read on another"
log=$(mktemp)
tokens=$(mktemp --suffix=.toml)
printf '[[token]]\nname = "smoke"\nsecret_sha256 = "%s"\nrole = "admin"\nnamespaces = ["*"]\n' \
  "$(printf %s smoke-secret | sha256sum | cut -d' ' -f1)" >"$tokens"
GRAYCAST_BIN="$target_dir/debug/graycast-under-test" GRAYCAST_CLUSTER_PORT=18380 GRAYCAST_ETCD_PORT=24380 \
  scripts/cluster.sh -- --tokens "$tokens" >"$log" 2>&1 &
cluster=$!
for _ in $(seq 300); do grep -q '^graycast:' "$log" && break; sleep 0.1; done
grep -q '^etcd: *http://127.0.0.1:24380,' "$log" || { cat "$log"; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT http://127.0.0.1:18380/v1/configs/smoke/k --json '{"value": "open"}')
[ "$status" = 401 ] || { echo "a write without the token got $status"; cat "$log"; exit 1; }
auth=(-H 'Authorization: Bearer smoke-secret')
curl -sf "${auth[@]}" -X PUT http://127.0.0.1:18380/v1/configs/smoke/k --json '{"value": "clustered"}' >/dev/null
for _ in $(seq 100); do
  curl -sf "${auth[@]}" http://127.0.0.1:18382/v1/configs/smoke/k | grep -q clustered && break
  sleep 0.1
done
curl -sf "${auth[@]}" http://127.0.0.1:18382/v1/configs/smoke/k | grep -q clustered || { cat "$log"; exit 1; }
kill -TERM "$cluster"; wait "$cluster" || true; rm -f "$log" "$tokens"

echo "== web console and OFREP web provider tests (node --test, headless chromium)"
(cd web/tests && GRAYCAST_BIN="$target_dir/debug/graycast" CHROMIUM="$(command -v chromium)" \
  node --test --test-concurrency=1 console.test.mjs typed.test.mjs requests.test.mjs ofrep-web.test.mjs)

echo "== @graycast/client (client-js: size budget, types, vectors, differential, Node over SSE and ws, Chromium)"
(cd client-js && GRAYCAST_BIN="$target_dir/debug/graycast-under-test" CHROMIUM="$(command -v chromium)" npm test)

echo "== packaging (the systemd unit checked and run under a real systemd; the image built with buildah from scratch, run with podman)"
if [ "$(id -u)" = 0 ]; then
  scripts/packaging.sh "$target_dir/debug/graycast"
else
  echo "SKIPPED: the packaging check needs root (rootful podman, systemd in a container): sudo scripts/packaging.sh $target_dir/debug/graycast"
fi
