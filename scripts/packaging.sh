#!/usr/bin/env bash
# Packaging checks, end to end:
#  1. packaging/graycast.service: `systemd-analyze verify` (with ExecStart pointed at the binary
#     under test; any complaint about the unit fails, and a planted typo must be caught), the
#     GRAYCAST_* variables it sets exist, and `systemd-analyze security --offline` scores it.
#  2. packaging/container.sh builds the image FROM scratch with buildah; podman runs it with a
#     token file and a named volume: /healthz, the console at /, 401 without a token, an
#     authenticated write and read, SIGHUP reloading a new token, a graceful stop (SIGTERM) and a
#     restart that still has the write.
#  3. The unit under a real systemd: this host's own systemd booted as PID 1 in a podman
#     container (the host's / as a read-only lower layer, no network): `systemctl start`, the
#     sandbox seen in /proc (a dynamic uid, no capabilities, no_new_privs, a seccomp filter), a
#     write and read with a token, `systemctl reload` loading a new token, `systemctl stop`
#     succeeding, and the data still in /var/lib/graycast after a new start.
# Everything lives in a temporary store and is removed at the end, also on failure.
#
#   scripts/packaging.sh [path/to/graycast]      (default: $CARGO_TARGET_DIR or target, debug/graycast)
#
# Runs as root (rootful podman). Installs what is missing (Debian): systemd (systemd-analyze, and
# the systemd booted in check 3), buildah, podman, runc, slirp4netns, curl, python3.
set -euo pipefail
umask 022 # what the containers' non-root users read (the binary, the token files) must be readable
cd "$(dirname "$0")/.."
repo=$PWD

fail() { echo "packaging.sh: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
binary=$(realpath -e "${1:-$target_dir/debug/graycast}" 2>/dev/null) \
  || fail "no server binary at ${1:-$target_dir/debug/graycast} (cargo build -p graycast-server)"
[ -x "$binary" ] || fail "$binary is not executable"

missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v podman >/dev/null 2>&1 || missing+=(podman)
# runc, not crun: crun 1.8 refuses to start anything on a host whose cgroup v2 hierarchy has a
# controller while v1 is mounted ("cgroups in hybrid mode not supported"); runc runs on v1, v2
# and hybrid hosts alike.
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
command -v slirp4netns >/dev/null 2>&1 || missing+=(slirp4netns)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the packaging checks need Debian's ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
[ "$(id -u)" = 0 ] || fail "the container check runs rootful podman: run this script as root (sudo)"

work=$(mktemp -d -t graycast-packaging.XXXXXX)
# What systemd-analyze, buildah, podman and runc create outside the temporary store, whatever
# their options: removed at the end if this run created them (and nothing else is in them).
host_paths=(/run/systemd/systemd-units-load /var/lib/containers/cache /run/runc /run/netns /run/mount
  /run/containers/networks)
host_new=()
for p in "${host_paths[@]}"; do [ -e "$p" ] || host_new+=("$p"); done
tidy_host() {
  local p
  for p in "${host_new[@]}"; do
    case $p in
      /run/systemd/systemd-units-load) rm -f "$p" ;;
      /var/lib/containers/cache) rm -f "$p/blob-info-cache-v1.boltdb"; rmdir "$p" ;;
      /run/netns) # podman bind-mounts it on itself (shared propagation, as ip-netns does)
        if [ -d "$p" ] && [ -z "$(ls -A "$p")" ]; then
          while mountpoint -q "$p"; do umount "$p" || break; done
          rmdir "$p"
        fi ;;
      *) [ -d "$p" ] && rmdir "$p" ;;
    esac
  done 2>/dev/null
}
name="graycast-packaging-$$"
image="localhost/$name:test"
volume="$name-data"
systemd_ctr="$name-systemd"
# The containers' cgroups go under this parent (in every hierarchy), removed at the end.
cgroup_parent="/$name"
podman_ok=no
cleanup() {
  local rc=$?
  set +e
  if [ "$podman_ok" = yes ]; then
    "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1
    "${podman[@]}" rm -f -t 0 "$systemd_ctr" >/dev/null 2>&1
    "${podman[@]}" volume rm -f "$volume" >/dev/null 2>&1
    "${podman[@]}" rmi -f "$image" >/dev/null 2>&1
  fi
  # Nothing of the store may stay mounted before it goes.
  grep -o " $work/[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  rm -rf "$work"
  find /sys/fs/cgroup -maxdepth 2 -type d -name "$name" 2>/dev/null | while read -r cg; do
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  tidy_host
  if [ "$rc" != 0 ]; then echo "packaging.sh: FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A copy: a cargo build running meanwhile may replace the file.
cp "$binary" "$work/graycast"
binary=$work/graycast

# ---------------------------------------------------------------- 1. the systemd unit
echo "== packaging/graycast.service: systemd-analyze verify"
unit=packaging/graycast.service
grep -qx 'ExecStart=/usr/local/bin/graycast' "$unit" || fail "$unit: ExecStart is not /usr/local/bin/graycast"
mkdir -p "$work/unit" "$work/typo"
# verify needs ExecStart's binary to exist: point it at the one under test.
sed "s#^ExecStart=/usr/local/bin/graycast#ExecStart=$binary#" "$unit" >"$work/unit/graycast.service"
grep -q "^ExecStart=$binary\$" "$work/unit/graycast.service" || fail "could not point ExecStart at $binary"
verify() { # prints the complaints about the unit, returns non-zero when there are any
  local out rc=0
  out=$(cd "$1" && systemd-analyze verify --man=no "$1/graycast.service" 2>&1) || rc=$?
  # Lines about other units (the host's) are not ours to judge: shown, not counted.
  local ours
  ours=$(grep 'graycast\.service' <<<"$out" || true)
  grep -v 'graycast\.service' <<<"$out" | grep . | sed 's/^/note (another unit): /' >&2 || true
  [ -n "$ours" ] && echo "$ours"
  [ "$rc" = 0 ] && [ -z "$ours" ]
}
complaints=$(verify "$work/unit") || { echo "$complaints" >&2; fail "systemd-analyze verify complains about $unit"; }
# The check itself: a misspelt directive only warns (exit 0), so complaints must be seen in the output.
sed 's/^ProtectHome=/ProtectHom=/' "$work/unit/graycast.service" >"$work/typo/graycast.service"
if verify "$work/typo" >/dev/null; then
  fail "systemd-analyze verify did not notice a misspelt directive (ProtectHom=): the check is blind"
fi
echo "verify: clean (and a planted 'ProtectHom=' is reported)"
help=$("$binary" --help)
for var in $(grep -o '^Environment=GRAYCAST_[A-Z_]*' "$unit" | cut -d= -f2); do
  grep -q "env: $var=" <<<"$help" || fail "$unit sets $var, which graycast --help does not list"
done
if score=$(systemd-analyze security --offline=true "$work/unit/graycast.service" 2>/dev/null | grep 'Overall exposure level'); then
  echo "security: ${score#→ }"
else
  echo "security: skipped (systemd-analyze security --offline does not work here)"
fi

# ---------------------------------------------------------------- 2. the container image
# The store: a temporary vfs store (no overlay mounts to leak), shared by buildah and podman.
cat >"$work/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$work/root"
runroot = "$work/runroot"
EOF
export CONTAINERS_STORAGE_CONF="$work/storage.conf"
mkdir -p "$work/tmp/big"
export TMPDIR="$work/tmp/big"     # buildah's and podman's big temporary files, else in /var/tmp
podman=(podman
  --root "$work/root" --runroot "$work/runroot" --storage-driver vfs
  --tmpdir "$work/tmp"              # libpod's run state (locks, exit files, events) out of /run/libpod
  --runtime runc                    # see the package list above
  --cgroup-manager cgroupfs         # no systemd or D-Bus needed
  --events-backend file)            # no journald needed
podman_ok=yes

echo "== packaging/container.sh: buildah, FROM scratch"
t0=$(now)
packaging/container.sh "$binary" "$image" >/dev/null || fail "packaging/container.sh could not build the image"
build_secs=$(since "$t0")
size=$("${podman[@]}" image inspect --format '{{.Size}}' "$image") || fail "podman does not see the image $image"
echo "image: $image, $size bytes, built in $build_secs s"
echo "image contents:"
mnt=$("${podman[@]}" image mount "$image" 2>/dev/null) || mnt=
if [ -n "$mnt" ]; then
  (cd "$mnt" && find . -mindepth 1 \( -type f -o -type l \) -printf '  /%P %s\n' | sort)
  "${podman[@]}" image unmount "$image" >/dev/null 2>&1 || true
fi

echo "== podman run"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
secret2=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$work/etc"
token() { # name secret role
  printf '[[token]]\nname = "%s"\nsecret_sha256 = "%s"\nrole = "%s"\nnamespaces = ["demo"]\n\n' \
    "$1" "$(printf %s "$2" | sha256sum | cut -d' ' -f1)" "$3"
}
token packaging-check "$secret" write >"$work/etc/tokens.toml"
chmod 0755 "$work/etc"
chmod 0644 "$work/etc/tokens.toml"
"${podman[@]}" volume create "$volume" >/dev/null

# The open-file and process limits: podman asks for 1048576 open files by default, which only a
# process with CAP_SYS_RESOURCE may grant beyond its own hard limit (a container sandbox may
# lack it); podman 4 lowers its own RLIMIT_NPROC to 32768 as it starts. Ask for what we have.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
nproc=$(ulimit -Hu)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
run_opts=(--name "$name" --cgroup-parent "$cgroup_parent"
  --network slirp4netns             # user-mode networking: no bridge or iptables rules (nor iptables) needed
  -p "127.0.0.1:$port:8080"
  -v "$volume:/data"
  -v "$work/etc:/etc/graycast:ro"
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc"
  --stop-timeout 30)
base="http://127.0.0.1:$port"

wait_healthz() { # seconds of deadline; the container must stay up meanwhile
  local deadline=$(( $(date +%s) + $1 ))
  until curl -sf -o /dev/null --max-time 2 "$base/healthz"; do
    if [ "$("${podman[@]}" inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
      "${podman[@]}" logs "$name" >&2 || true
      fail "the container stopped before /healthz answered"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { "${podman[@]}" logs "$name" >&2 || true; fail "$base/healthz did not answer within $1 s"; }
    sleep 0.05
  done
}
t0=$(now)
"${podman[@]}" run -d "${run_opts[@]}" "$image" >/dev/null || fail "podman run failed"
wait_healthz 60
ready_secs=$(since "$t0")
echo "healthz: answered $ready_secs s after podman run (port $port)"

check() { # description, then a command that must succeed
  local what=$1; shift
  "$@" || { "${podman[@]}" logs --tail 20 "$name" >&2 || true; fail "$what"; }
  echo "ok: $what"
}
status() { # expected-status curl-args...: the status must match
  local want=$1; shift
  local got
  got=$(curl -s -o "$work/body" -w '%{http_code}' --max-time 10 "$@") || true
  [ "$got" = "$want" ] || { echo "expected $want, got $got: $(head -c 300 "$work/body" 2>/dev/null)" >&2; return 1; }
}
# The console's own title, from the source the binary embeds.
title=$(grep -o '<title>[^<]*</title>' web/index.html | head -n 1)
[ -n "$title" ] || fail "web/index.html has no <title>"
check "GET / serves the console ($title)" bash -c "curl -sf --max-time 10 '$base/' | grep -qF '$title'"
check "GET /readyz" status 200 "$base/readyz"
check "a write without a token is 401" status 401 -X PUT "$base/v1/configs/demo/k" --json '{"value": 0}'
check "an authenticated write is 201" status 201 -H "Authorization: Bearer $secret" -X PUT "$base/v1/configs/demo/k" --json '{"value": 1}'
check "an authenticated read returns it" bash -c "curl -sf --max-time 10 -H 'Authorization: Bearer $secret' '$base/v1/configs/demo/k' | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"value\"] == 1'"
check "a token not yet in the file is 401" status 401 -H "Authorization: Bearer $secret2" "$base/v1/configs/demo/k"
token packaging-reader "$secret2" read >>"$work/etc/tokens.toml"
"${podman[@]}" kill --signal HUP "$name" >/dev/null
deadline=$(( $(date +%s) + 10 ))
until status 200 -H "Authorization: Bearer $secret2" "$base/v1/configs/demo/k" 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.05
done
check "SIGHUP (podman kill --signal HUP) loads the new token" status 200 -H "Authorization: Bearer $secret2" "$base/v1/configs/demo/k"

t0=$(now)
"${podman[@]}" stop -t 30 "$name" >/dev/null
stop_secs=$(since "$t0")
code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$name")
check "podman stop (SIGTERM) ends the server cleanly, exit 0 (took $stop_secs s)" test "$code" = 0
"${podman[@]}" start "$name" >/dev/null || fail "podman start failed"
wait_healthz 60
check "after a restart the write is still in the volume" bash -c "curl -sf --max-time 10 -H 'Authorization: Bearer $secret' '$base/v1/configs/demo/k' | python3 -c 'import json,sys; assert json.load(sys.stdin)[\"value\"] == 1'"
check "the server runs as uid 65532" bash -c "[ \"\$(${podman[*]} top '$name' huser | tail -n 1 | tr -d ' ')\" = 65532 ]"
"${podman[@]}" stop -t 30 "$name" >/dev/null

# ---------------------------------------------------------------- 3. the unit under systemd
echo "== packaging/graycast.service under systemd (this host's systemd as PID 1 in a container)"
systemd_bin=/lib/systemd/systemd
[ -x "$systemd_bin" ] || fail "no $systemd_bin to boot (Debian's systemd package)"
mkdir -p "$work/sd/units/graycast.service.d" "$work/sd/etc"
cp packaging/graycast.service "$work/sd/units/graycast.service"
# The container is privileged (the unit's sandbox needs mount and user namespaces): nothing of
# the host's boot may run in it (udev, sysctl, modules...). So it boots into a target that only
# wants the journal, and the unit, as it ships, gets one drop-in: no implicit dependency on
# sysinit.target and basic.target. /etc/systemd/system is these files only.
printf '[Unit]\nDefaultDependencies=no\n' >"$work/sd/units/graycast.service.d/check.conf"
printf '[Unit]\nDescription=graycast packaging check\nDefaultDependencies=no\nWants=systemd-journald.service\n' \
  >"$work/sd/units/graycast-check.target"
printf 'GRAYCAST_LISTEN=0.0.0.0:8080\nGRAYCAST_TOKENS=/etc/graycast/tokens.toml\n' >"$work/sd/etc/graycast.env"
token packaging-check "$secret" write >"$work/sd/etc/tokens.toml"
chmod 0644 "$work/sd/etc/graycast.env" "$work/sd/etc/tokens.toml"
sd_opts=(--name "$systemd_ctr" --cgroup-parent "$cgroup_parent"
  --privileged --systemd false --network none   # (podman's systemd mode copies the host's /tmp into its tmpfs)
  --tmpfs /run:rw,notmpcopyup,mode=0755 --tmpfs /run/lock:rw,notmpcopyup --tmpfs /tmp:rw,notmpcopyup,mode=1777
  --tmpfs /var/log/journal:rw,notmpcopyup
  -v "$binary:/usr/local/bin/graycast:ro"
  -v "$work/sd/units:/etc/systemd/system:ro"
  --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
# --rootfs /:O: the host's / is the read-only lower layer of an overlay (writes stay in the
# store); "/:O" is the first positional argument, so it comes after every option.
"${podman[@]}" run -d "${sd_opts[@]}" --rootfs /:O "$systemd_bin" --unit=graycast-check.target >/dev/null \
  || fail "podman could not boot systemd in a container"
sdx() { "${podman[@]}" exec "$systemd_ctr" "$@"; }
deadline=$(( $(date +%s) + 60 ))
until [ "$(sdx systemctl is-system-running 2>/dev/null)" = running ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { sdx systemctl --failed --no-pager >&2 || true; fail "systemd in the container is not running after 60 s: $(sdx systemctl is-system-running 2>&1)"; }
  sleep 0.2
done
sdx mkdir -p /etc/graycast
"${podman[@]}" cp "$work/sd/etc/graycast.env" "$systemd_ctr:/etc/graycast/graycast.env"
"${podman[@]}" cp "$work/sd/etc/tokens.toml" "$systemd_ctr:/etc/graycast/tokens.toml"
sd_logs() { sdx journalctl -u graycast --no-pager -n 30 >&2 || true; }
sd_check() { # description, then a command that must succeed
  local what=$1; shift
  "$@" || { sd_logs; fail "under systemd: $what"; }
  echo "ok: $what"
}
sd_healthz() {
  local deadline=$(( $(date +%s) + 30 ))
  until sdx curl -sf -o /dev/null --max-time 2 http://127.0.0.1:8080/healthz; do
    [ "$(sdx systemctl is-active graycast)" != failed ] || { sd_logs; fail "under systemd: graycast.service failed"; }
    [ "$(sdx systemctl show -p NRestarts --value graycast)" = 0 ] || { sd_logs; fail "under systemd: graycast.service exited and was restarted"; }
    [ "$(date +%s)" -lt "$deadline" ] || { sd_logs; fail "under systemd: /healthz did not answer within 30 s"; }
    sleep 0.1
  done
}
sd_status() { # expected-status curl-args...
  local want=$1; shift
  local got
  got=$(sdx curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@") || true
  [ "$got" = "$want" ] || { echo "expected $want, got $got" >&2; return 1; }
}
sd_value() { # the value of demo/k must be $1
  sdx curl -sf --max-time 10 -H "Authorization: Bearer $secret" http://127.0.0.1:8080/v1/configs/demo/k \
    | python3 -c 'import json, sys; assert json.load(sys.stdin)["value"] == int(sys.argv[1])' "$1"
}
t0=$(now)
sd_check "systemctl start graycast" sdx systemctl start graycast
sd_healthz
unit_ready_secs=$(since "$t0")
echo "healthz: answered $unit_ready_secs s after systemctl start"
pid=$(sdx systemctl show -p MainPID --value graycast)
proc=$(sdx cat "/proc/$pid/status")
uid=$(awk '/^Uid:/ { print $2 }' <<<"$proc")
sd_check "runs as a dynamic user (uid $uid), no capabilities, no_new_privs, a seccomp filter" \
  test "$uid" -ge 61184 -a "$uid" -le 65519 \
  -a "$(awk '/^CapEff:/ { print $2 }' <<<"$proc")" = 0000000000000000 \
  -a "$(awk '/^NoNewPrivs:/ { print $2 }' <<<"$proc")" = 1 \
  -a "$(awk '/^Seccomp:/ { print $2 }' <<<"$proc")" = 2
sd_check "the open-file limit is raised to the hard limit ($(sdx awk '/open files/ { print $4 }' "/proc/$pid/limits"))" \
  test "$(sdx awk '/open files/ { print $4 }' "/proc/$pid/limits")" = "$(sdx awk '/open files/ { print $5 }' "/proc/$pid/limits")"
sd_metrics() { # /metrics under ProcSubset=pid (no /proc/stat): the process figures are there
  sdx curl -sf --max-time 10 http://127.0.0.1:8080/metrics | python3 -c '
import sys
values = {l.split()[0]: float(l.split()[1]) for l in sys.stdin if l[:1] not in "#\n"}
for name in ("process_resident_memory_bytes", "process_start_time_seconds", "process_open_fds", "process_cpu_seconds_total"):
    assert values.get(name, 0) > 0 or name == "process_cpu_seconds_total" and name in values, name
'
}
sd_check "/metrics has the process figures (start time included) under ProcSubset=pid" sd_metrics
sd_check "an authenticated write is 201" sd_status 201 -H "Authorization: Bearer $secret" -X PUT http://127.0.0.1:8080/v1/configs/demo/k --json '{"value": 2}'
sd_check "an authenticated read returns it" sd_value 2
sd_check "the data is in /var/lib/graycast, owned by that user" \
  test "$(sdx stat -L -c %u /var/lib/graycast/graycast.redb)" = "$uid"
sd_check "a token not yet in the file is 401" sd_status 401 -H "Authorization: Bearer $secret2" http://127.0.0.1:8080/v1/configs/demo/k
token packaging-reader "$secret2" read | "${podman[@]}" exec -i "$systemd_ctr" sh -c 'cat >> /etc/graycast/tokens.toml'
sd_check "systemctl reload graycast" sdx systemctl reload graycast
deadline=$(( $(date +%s) + 10 ))
until sd_status 200 -H "Authorization: Bearer $secret2" http://127.0.0.1:8080/v1/configs/demo/k 2>/dev/null; do
  [ "$(date +%s)" -lt "$deadline" ] || break
  sleep 0.05
done
sd_check "the reload loaded the new token" sd_status 200 -H "Authorization: Bearer $secret2" http://127.0.0.1:8080/v1/configs/demo/k
t0=$(now)
sd_check "systemctl stop graycast" sdx systemctl stop graycast
unit_stop_secs=$(since "$t0")
result=$(sdx systemctl show -p Result -p ExecMainStatus -p NRestarts graycast | sort | paste -sd ' ')
sd_check "it stopped cleanly in $unit_stop_secs s ($result)" test "$result" = "ExecMainStatus=0 NRestarts=0 Result=success"
sdx systemctl start graycast
sd_healthz
sd_check "after a new start the write is still there" sd_value 2
"${podman[@]}" rm -f -t 0 "$systemd_ctr" >/dev/null   # nothing in it is kept

echo "== packaging: all checks passed"
echo "measured: image $size bytes; build $build_secs s; podman run to /healthz $ready_secs s; graceful stop $stop_secs s;" \
  "systemctl start to /healthz $unit_ready_secs s; systemctl stop $unit_stop_secs s"
