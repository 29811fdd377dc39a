#!/usr/bin/env bash
# Builds one container image per daemon, one for the pleiades CLI and the
# host namespace holder (hostns), FROM scratch: static binaries built here
# (nothing is pulled; no registry is needed), run as uid 65532.
#
#   stored        cgo, RocksDB linked statically (librocksdb.a from librocksdb-dev)
#   others        CGO_ENABLED=0
#
# Images are tagged pleiades/<name>:<version> (PLEIADES_VERSION, else git
# describe) and pleiades/<name>:latest (unless LATEST=0).
# IMAGES="raftd stored" limits the set; the binaries stay in bin/static.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

command -v docker >/dev/null || { echo "images: docker is required" >&2; exit 1; }
version=${PLEIADES_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
ldflags="-s -w -X github.com/pleiades-db/pleiades/shared/version.version=$version"
out="$ROOT/bin/static"
mkdir -p "$out"

# module and description of each image, in build order.
declare -A module=(
  [stored]=stored [raftd]=raftd [gossipd]=gossipd [clockd]=clockd [workflowd]=workflowd
  [msgd]=services [pleiades]=services [hostns]=deploy
)
declare -A what=(
  [stored]="the node's storage daemon, RocksDB" [raftd]="multi-raft and the KV API"
  [gossipd]="membership, SWIM and Vivaldi" [clockd]="hybrid logical clock"
  [workflowd]="durable workflows" [msgd]="messaging, embedded NATS"
  [pleiades]="the command line, without RocksDB" [hostns]="holds a host's network namespace"
)
images=${IMAGES:-"stored raftd gossipd clockd workflowd msgd pleiades hostns"}

# static_nocgo builds a pure Go binary.
static_nocgo() {
  (cd "$1" && CGO_ENABLED=0 go build -trimpath -tags netgo,osusergo -ldflags "$ldflags" -o "$out/$2" "./cmd/$2")
}

# static_cgo builds a cgo binary linked statically, RocksDB included.
static_cgo() {
  (cd "$1" && CGO_ENABLED=1 CGO_LDFLAGS="-lrocksdb -lstdc++ -lm -lz -lbz2 -lsnappy -llz4 -lzstd" \
    go build -trimpath -tags netgo,osusergo \
    -ldflags "$ldflags -linkmode external -extldflags -static" -o "$out/$2" "./cmd/$2")
}

for name in $images; do
  mod=${module[$name]:-}
  [ -n "$mod" ] || { echo "images: unknown image $name" >&2; exit 1; }
  log "build $name (static)"
  if [ "$name" = stored ]; then
    static_cgo "$mod" "$name"
  elif ! static_nocgo "$mod" "$name" 2>"$out/$name.err"; then
    if [ "$name" = pleiades ] && grep -q grocksdb "$out/$name.err"; then
      # The CLI must not carry RocksDB; this fallback only keeps the image
      # buildable while the CLI still links stored.
      echo "images: WARNING: pleiades still links stored (RocksDB); its image carries RocksDB until it does not" >&2
      static_cgo "$mod" "$name"
    else
      cat "$out/$name.err" >&2
      exit 1
    fi
  fi
  rm -f "$out/$name.err"
  file "$out/$name" 2>/dev/null | grep -q "statically linked" || { echo "images: $name is not statically linked" >&2; exit 1; }

  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  mkdir "$ctx/data"
  cp "$out/$name" "$ctx/$name"
  health="HEALTHCHECK NONE"
  case $name in
    pleiades|hostns) ;;
    *) health="HEALTHCHECK --interval=2s --timeout=3s --start-period=60s --retries=3 CMD [\"/usr/local/bin/$name\", \"health\"]" ;;
  esac
  sed -e "s|@BIN@|$name|g" -e "s|@DESCRIPTION@|${what[$name]}|g" -e "s|@HEALTH@|$health|" \
    deploy/docker/Dockerfile.in >"$ctx/Dockerfile"
  log "image pleiades/$name:$version"
  # The legacy builder's deprecation notice is noise here: show the
  # output only when the build fails.
  tags=(-t "pleiades/$name:$version")
  [ "${LATEST:-1}" = 0 ] || tags+=(-t "pleiades/$name:latest")
  if ! docker build -q --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    "${tags[@]}" "$ctx" >"$ctx.log" 2>&1; then
    cat "$ctx.log" >&2
    exit 1
  fi
  rm -f "$ctx.log"
  rm -rf "$ctx"
  trap - EXIT
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep "^pleiades/.*:$version" | sort
