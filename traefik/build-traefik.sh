#!/usr/bin/env bash
# Builds a real Traefik binary, used by traefik/real_test.go, from the Go module proxy — outside
# the atende module (Traefik is never added to our go.mod). The binary is cached outside the repo;
# when it already exists this script does nothing but print its path, so `make test` pays the
# cold build (about 10 minutes of 2 idle cores; 37 minutes were seen on a loaded machine) only
# once per machine.
#
#   traefik/build-traefik.sh            # builds if needed, prints the binary path on stdout
#   TRAEFIK_VERSION=v3.6.12 ATENDE_TRAEFIK_BIN=/path/to/traefik traefik/build-traefik.sh
#
# v3.7.x does not build with this toolchain; keep the default pinned to v3.6.x.
set -euo pipefail

version="${TRAEFIK_VERSION:-v3.6.12}"
out="${ATENDE_TRAEFIK_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/atende/traefik-$version}"
go="${GO:-go}"

if [[ -x "$out" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$(dirname "$out")"
# Serialise concurrent builds (two `make test` runs on one machine) on a lock next to the binary.
exec 9>"$out.lock"
flock 9
if [[ -x "$out" ]]; then
  echo "$out"
  exit 0
fi

echo "building traefik $version into $out (10 minutes or more cold on 2 cores)..." >&2
start=$(date +%s)

# Run outside any enclosing module or workspace so our go.mod is never consulted or touched.
tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp" "$out.tmp.$$"' EXIT
cd "$tmp"
export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
dir="$("$go" mod download -json "github.com/traefik/traefik/v3@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
if [[ -z "$dir" || ! -d "$dir" ]]; then
  echo "build-traefik: go mod download did not give a module directory for traefik $version" >&2
  exit 1
fi

# The module cache is read-only; build from a writable copy so `-mod=mod` may complete go.sum.
cp -r "$dir" "$tmp/src"
chmod -R u+w "$tmp/src"
cd "$tmp/src"
"$go" build -trimpath \
  -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$version" \
  -o "$out.tmp.$$" ./cmd/traefik
# Same directory, so the rename is atomic: a binary at $out is always complete.
mv -f "$out.tmp.$$" "$out"
echo "built $out in $(( $(date +%s) - start ))s" >&2
echo "$out"
