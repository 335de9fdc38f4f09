#!/bin/sh
# The size budget of the shipped file (issue 20): gzip -9 of dist/graycast.min.js at most
# 6,144 bytes. Also checks that the committed dist/ is the build of src/, so that what is
# measured and shipped is what is tested.
set -eu
cd "$(dirname "$0")/.."
BUDGET=6144
built=$(mktemp)
trap 'rm -f "$built"' EXIT
# The build of package.json, written elsewhere (terser takes the last --output).
npm run --silent build -- --output "$built"
if ! cmp -s "$built" dist/graycast.min.js; then
  echo "dist/graycast.min.js is not the build of src/graycast.js: run npm run build and commit it" >&2
  exit 1
fi
size=$(gzip -9 < dist/graycast.min.js | wc -c | tr -d ' ')
echo "dist/graycast.min.js: $(wc -c < dist/graycast.min.js | tr -d ' ') bytes, $size bytes gzip -9 (budget $BUDGET)"
if [ "$size" -gt "$BUDGET" ]; then
  echo "over the size budget by $((size - BUDGET)) bytes" >&2
  exit 1
fi
