#!/usr/bin/env bash
# Builds the graycast container image with buildah, FROM scratch: the binary, exactly the shared
# libraries `ldd` lists for it (and the dynamic loader), a writable /data and /tmp, and nothing
# else (no shell, no package manager). No base image is pulled, so it builds offline.
#
#   packaging/container.sh BINARY IMAGE        e.g. packaging/container.sh target/release/graycast localhost/graycast:latest
#
# Storage: buildah's defaults, or CONTAINERS_STORAGE_CONF (scripts/packaging.sh points it at a
# temporary store). Prints the image id on stdout; progress goes to stderr.
#
# The image runs as uid 65532 with GRAYCAST_LISTEN=0.0.0.0:8080, GRAYCAST_DATA_DIR=/data and
# GRAYCAST_TOKENS=/etc/graycast/tokens.toml: mount a token file there (the server refuses to serve
# beyond loopback without one) and a volume on /data. Extra arguments after the image name are
# passed to the server (`podman run IMAGE --log-format json`); any GRAYCAST_* variable (-e)
# overrides a default. See packaging/README.md.
set -euo pipefail
umask 022 # the image's directories and files must be readable by its non-root user

if [ "$#" -ne 2 ]; then
  echo "usage: $0 BINARY IMAGE" >&2
  exit 2
fi
binary=$1
image=$2
[ -x "$binary" ] || { echo "container.sh: $binary is not an executable file" >&2; exit 1; }
command -v buildah >/dev/null || { echo "container.sh: buildah is missing (Debian: apt-get install buildah)" >&2; exit 1; }
command -v ldd >/dev/null || { echo "container.sh: ldd is missing (Debian: libc-bin)" >&2; exit 1; }

uid=65532 # the conventional "nonroot" id of distroless images

# The libraries: every "name => /path (0x…)" line and the loader's "/path (0x…)" line of ldd.
# A library that is "not found" stops the build; a static binary has none.
libs=()
if ldd_out=$(ldd "$binary" 2>&1); then
  if grep -q 'not found' <<<"$ldd_out"; then
    echo "container.sh: ldd cannot resolve every library of $binary:" >&2
    echo "$ldd_out" >&2
    exit 1
  fi
  while read -r lib; do
    [ -n "$lib" ] && libs+=("$lib")
  done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$ldd_out" | sort -u)
elif ! grep -qE 'not a dynamic executable|statically linked' <<<"$ldd_out"; then
  echo "container.sh: ldd $binary failed: $ldd_out" >&2
  exit 1
fi

stage=$(mktemp -d)
ctr=
cleanup() {
  rm -rf "$stage"
  if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# The root file system, staged here and added as one layer from a tar file, whose entries carry
# their owners (root, except /data: the server's user). Libraries keep the path ldd names (the
# loader's is the binary's PT_INTERP), with the content of the file it resolves to.
mkdir -p "$stage/root/usr/local/bin" "$stage/root/etc/graycast" "$stage/root/tmp" "$stage/root/data"
cp "$binary" "$stage/root/usr/local/bin/graycast"
chmod 0755 "$stage/root/usr/local/bin/graycast"
for lib in "${libs[@]}"; do
  mkdir -p "$stage/root$(dirname "$lib")"
  cp -L "$lib" "$stage/root$lib"
done
printf 'root:x:0:0:root:/:/sbin/nologin\ngraycast:x:%s:%s:graycast:/data:/sbin/nologin\n' "$uid" "$uid" >"$stage/root/etc/passwd"
printf 'root:x:0:\ngraycast:x:%s:\n' "$uid" >"$stage/root/etc/group"
chmod 1777 "$stage/root/tmp"
chmod 0700 "$stage/root/data"
(cd "$stage/root" && find . -mindepth 1 -maxdepth 1 ! -name data -printf '%P\n' | sort) >"$stage/list"
tar -cf "$stage/rootfs.tar" --numeric-owner --owner=0 --group=0 --sort=name -C "$stage/root" -T "$stage/list"
tar -rf "$stage/rootfs.tar" --numeric-owner --owner="$uid" --group="$uid" -C "$stage/root" data

version=$("$binary" --version 2>/dev/null | awk '{ print $NF; exit }') || version=unknown
echo "container.sh: $binary ($version) with ${#libs[@]} libraries: ${libs[*]}" >&2

ctr=$(buildah from --quiet scratch)
buildah add --quiet "$ctr" "$stage/rootfs.tar" / >/dev/null
buildah config \
  --user "$uid:$uid" \
  --workingdir /data \
  --entrypoint '["/usr/local/bin/graycast"]' \
  --cmd '' \
  --env GRAYCAST_LISTEN=0.0.0.0:8080 \
  --env GRAYCAST_DATA_DIR=/data \
  --env GRAYCAST_TOKENS=/etc/graycast/tokens.toml \
  --port 8080/tcp \
  --volume /data \
  --stop-signal SIGTERM \
  --label org.opencontainers.image.title=graycast \
  --label org.opencontainers.image.description="graycast real-time configuration center" \
  --label org.opencontainers.image.version="$version" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$image"
ctr=
