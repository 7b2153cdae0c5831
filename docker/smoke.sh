#!/usr/bin/env bash
# docker/smoke.sh [BINARY]
#
# Builds the runtime image of docker/Dockerfile (--target runtime-prebuilt) with podman from an
# ohfp binary cargo built, on a Debian base made here with debootstrap (no registry is reached),
# then runs the image's filesystem as the image's user and checks it: its metadata (non-root
# USER, HEALTHCHECK, volumes, EXPOSE), /health, the image's own health check command, and a
# HostFactory call. Prints PASS/FAIL lines; exits non-zero on any failure. Needs root.
#
# BINARY (or OHFP_BINARY): the ohfp binary to put in the image. Without it: cargo build
#   --release (OHFP_SMOKE_PROFILE=dev builds and uses a debug binary, quicker here).
# OHFP_SMOKE_CACHE: where the base's root filesystem tarball is kept (~/.cache/ohfp/docker).
# OHFP_SMOKE_MIRROR: the Debian mirror debootstrap uses (http://deb.debian.org/debian).
#
# Go templates and the in-image script are single-quoted on purpose.
# shellcheck disable=SC2016,SC1091
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${OHFP_SMOKE_CACHE:-$HOME/.cache/ohfp/docker}
mirror=${OHFP_SMOKE_MIRROR:-http://deb.debian.org/debian}
release=$(. /etc/os-release && echo "$VERSION_CODENAME")
base=localhost/ohfp-base:$release
image=localhost/ohfp:smoke
started=$(date +%s)
failures=0

pass() { echo "PASS $*"; }
elapsed() { echo "$(( $(date +%s) - started )) s"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
die() { echo "FAIL $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "smoke.sh needs root (podman build --isolation chroot, image mount, chroot)"

# Everything made below is undone on every exit.
work=$(mktemp -d /tmp/ohfp-smoke.XXXXXX)
pid="" mounted="" rootfs=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    [ -z "$mounted" ] || podman image unmount "$image" >/dev/null 2>&1 || true
    [ -z "$rootfs" ] || rm -rf "$rootfs"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# 1. Tools, from Debian, under the lock every apt-get here takes.
missing=()
for tool in podman:podman debootstrap:debootstrap curl:curl unshare:util-linux; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    mkdir -p "$HOME/.cache/ohfp"
    flock "$HOME/.cache/ohfp/apt.lock" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends ${missing[*]} uidmap" >"$work/apt.log" 2>&1 \
        || { cat "$work/apt.log"; die "apt-get install ${missing[*]}"; }
fi

# 2. The base image: a minimal Debian of the host's release, with what the binary links against
# (libc, libgcc_s: both in minbase) and CA certificates. The root filesystem's tarball is cached,
# and the imported image kept, so reruns skip this.
if ! podman image exists "$base"; then
    tarball=$cache/ohfp-base-$release.tar
    if [ ! -s "$tarball" ]; then
        mkdir -p "$cache"
        rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
        echo "debootstrap $release from $mirror (minbase, ca-certificates)"
        debootstrap --variant=minbase --include=ca-certificates "$release" "$rootfs" "$mirror" \
            >"$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log"; die "debootstrap"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar --numeric-owner -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
        rm -rf "$rootfs"
        rootfs=""
    fi
    podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' "$tarball" "$base" >/dev/null
fi
pass "base image $base ($(elapsed))"

# 3. The binary.
binary=${1:-${OHFP_BINARY:-}}
if [ -z "$binary" ]; then
    profile=${OHFP_SMOKE_PROFILE:-release}
    (cd "$repo" && cargo build --locked --profile "$profile" --bin ohfp)
    dir=$profile
    [ "$profile" = dev ] && dir=debug
    binary=${CARGO_TARGET_DIR:-$repo/target}/$dir/ohfp
fi
[ -x "$binary" ] || die "no executable binary at $binary"

# 4. The image: the Dockerfile's runtime-prebuilt target on the base, from a context holding
# only the binary and config/ (docker format: OCI drops HEALTHCHECK).
mkdir "$work/context"
cp -r "$repo/config" "$work/context/config"
cp "$binary" "$work/context/ohfp"
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
podman build --isolation chroot --format docker --pull=never \
    -f "$repo/docker/Dockerfile" --target runtime-prebuilt \
    --build-arg RUNTIME_BASE="$base" -t "$image" "$work/context" >"$work/build.log" 2>&1 \
    || { tail -40 "$work/build.log"; die "podman build"; }
pass "podman build --isolation chroot --target runtime-prebuilt: $image ($(elapsed))"
# The image this one replaces (its tag moved) is removed, so reruns do not pile up layers.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
    podman image rm "$previous" >/dev/null 2>&1 || true
fi

# 5. The image's metadata.
inspect() { podman image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
workdir=$(inspect '{{.Config.WorkingDir}}')
mapfile -t env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t entry < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t cmd < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d')
mapfile -t health < <(inspect '{{if .HealthCheck}}{{range .HealthCheck.Test}}{{println .}}{{end}}{{end}}' | sed '/^$/d')
volumes=$(inspect '{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}' | sed 's/ *$//')
ports=$(inspect '{{range $k, $v := .Config.ExposedPorts}}{{$k}} {{end}}' | sed 's/ *$//')

mounted=$(podman image mount "$image")
[ -d "$mounted" ] || die "podman image mount $image"
ids=$(awk -F: -v u="$user" '$1 == u || $3 == u { print $3 ":" $4; exit }' "$mounted/etc/passwd")
if [ -n "$user" ] && [ -n "$ids" ] && [ "${ids%%:*}" != 0 ]; then
    pass "USER $user is not root (uid:gid $ids)"
else
    fail "USER '$user' must name a non-root user of the image (found '$ids')"
    ids=65534:65534
fi
if [ -s "$mounted/etc/ssl/certs/ca-certificates.crt" ]; then
    pass "CA certificates in /etc/ssl/certs (for the clouds' TLS)"
else
    fail "no /etc/ssl/certs/ca-certificates.crt in the image"
fi
case " $volumes " in
*" /etc/ohfp "*) case " $volumes " in *" /var/lib/ohfp "*) has_volumes=1 ;; esac ;;
esac
if [ -n "${has_volumes:-}" ]; then
    pass "VOLUME $volumes"
else
    fail "VOLUME must hold /etc/ohfp (config) and /var/lib/ohfp (data), found '$volumes'"
fi
case " $ports " in
*" 8000/tcp "*) pass "EXPOSE $ports" ;;
*) fail "EXPOSE must hold 8000/tcp, found '$ports'" ;;
esac
if [ "${health[0]:-}" = CMD ] && [ ${#health[@]} -gt 1 ]; then
    pass "HEALTHCHECK ${health[*]}"
else
    fail "no HEALTHCHECK CMD (found '${health[*]:-}')"
fi
if [ "${entry[*]:-} ${cmd[*]:-}" = "ohfp serve" ]; then
    pass "ENTRYPOINT/CMD ${entry[*]} ${cmd[*]}"
else
    fail "ENTRYPOINT/CMD should run 'ohfp serve', found '${entry[*]:-} ${cmd[*]:-}'"
fi

# 6. Run the image's filesystem: the entrypoint and command, as the image's user, with the
# image's environment and working directory, chrooted into the mounted image. The data volume
# is a writable copy of the image's /var/lib/ohfp, bound over it in a private mount namespace
# (gone with the process); the service listens on a free loopback port.
data=$work/data
cp -a "$mounted/var/lib/ohfp" "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
    || shuf -i 20000-60000 -n 1)
url=http://127.0.0.1:$port
# A command run like Docker runs it in the container: in a private mount namespace with the
# data volume bound, chrooted into the image as its user, with Docker's default PATH and then the
# image's environment (NAME=VALUE words after it override; the command follows).
script='root=$1 data=$2 ids=$3 workdir=$4; shift 4
mount --bind "$data" "$root/var/lib/ohfp" || exit 97
mount -t proc proc "$root/proc" 2>/dev/null || true
exec chroot --userspec="$ids" "$root" /usr/bin/env -i -C "${workdir:-/}" "$@"'
in_image=(unshare --mount --propagation private -- sh -c "$script" sh "$mounted" "$data" "$ids" "$workdir"
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${env[@]}")
"${in_image[@]}" OHFP_SERVER__BIND="127.0.0.1:$port" "${entry[@]}" "${cmd[@]}" >"$work/serve.log" 2>&1 &
pid=$!

up=""
for _ in $(seq 600); do
    if curl -fsS -o "$work/health.json" "$url/health" 2>/dev/null; then up=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if [ -n "$up" ]; then
    pass "GET /health 200: $(cat "$work/health.json")"
else
    fail "GET /health did not answer 200 (the service stopped, or 60 s passed); it said:"
    tail -30 "$work/serve.log"
fi

if [ -n "$up" ]; then
    uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
    if [ "$uid" = "${ids%%:*}" ]; then
        pass "the service runs as uid $uid"
    else
        fail "the service runs as uid $uid, not the image's ${ids%%:*}"
    fi

    if [ ${#health[@]} -gt 1 ] && "${in_image[@]}" OHFP_URL="$url" "${health[@]:1}" >"$work/hc.log" 2>&1; then
        pass "the HEALTHCHECK command exits 0"
    else
        fail "the HEALTHCHECK command '${health[*]:1}' failed: $(cat "$work/hc.log")"
    fi
    # ... and does not pass when nothing answers (port 1 is never the service's).
    if [ ${#health[@]} -gt 1 ] && ! "${in_image[@]}" OHFP_URL=http://127.0.0.1:1 "${health[@]:1}" >/dev/null 2>&1; then
        pass "the HEALTHCHECK command exits non-zero when no service answers"
    else
        fail "the HEALTHCHECK command exits 0 with no service to answer it"
    fi

    code=$(curl -sS -o "$work/templates.json" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' -d '{}' "$url/api/v1/hostfactory/getAvailableTemplates")
    count=$(grep -o '"templateId"' "$work/templates.json" | wc -l)
    if [ "$code" = 200 ] && [ "$count" -gt 0 ]; then
        pass "POST /api/v1/hostfactory/getAvailableTemplates 200 with $count templates (the image's templates file)"
    else
        fail "getAvailableTemplates answered $code: $(head -c 500 "$work/templates.json")"
    fi

    db=$data/data/ohfp.db
    if [ -f "$db" ] && [ "$(stat -c %u:%g "$db")" = "$ids" ]; then
        pass "the database is in the data volume, owned by $ids"
    else
        fail "no database owned by $ids at /var/lib/ohfp/data/ohfp.db"
    fi
fi

echo "$(elapsed) in all"
if [ "$failures" -gt 0 ]; then
    echo "FAIL $failures check(s) failed"
    exit 1
fi
echo "PASS docker/smoke.sh"
