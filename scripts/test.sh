#!/usr/bin/env bash
# The whole test suite: the Rust workspace (unit, end-to-end, SDK, CLI, gray releases), the
# REST API fuzzed from its OpenAPI document (schemathesis), and the web console in a real
# headless Chromium. Installs what is missing: Debian's chromium (as root), schemathesis
# (PyPI) and the pinned npm packages of web/tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing chromium (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the browser tests need Debian's chromium: sudo apt-get install chromium" >&2
    exit 1
  fi
fi
if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
  echo "== installing schemathesis (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check schemathesis==4.32.5
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

echo "== web console tests (node --test, headless chromium)"
(cd web/tests && GRAYCAST_BIN="$target_dir/debug/graycast" CHROMIUM="$(command -v chromium)" \
  node --test --test-concurrency=1 rollout.test.mjs console.test.mjs)
