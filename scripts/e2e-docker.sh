#!/usr/bin/env bash
# The fault suite across containers (deploy/e2edocker, build tag
# e2edocker) on the images of `make images`. Every container, network and
# volume of the run carries its compose project label and is removed when
# the suite ends; this script removes them again if the test binary dies.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

if ! docker info >/dev/null 2>&1; then
  echo "e2e-docker: no docker engine answers (docker info failed)" >&2
  exit 1
fi
command -v docker-compose >/dev/null || { echo "e2e-docker: docker-compose is required" >&2; exit 1; }
project="pleiades-e2e-$$"
export E2E_DOCKER_PROJECT="$project"

cleanup() {
  local label="label=com.docker.compose.project=$project" ids
  ids=$(docker ps -q --filter "$label" --filter status=paused)
  [ -z "$ids" ] || docker unpause $ids >/dev/null 2>&1 || true
  ids=$(docker ps -aq --filter "$label")
  [ -z "$ids" ] || docker rm -f -v $ids >/dev/null 2>&1 || true
  ids=$(docker network ls -q --filter "$label")
  [ -z "$ids" ] || docker network rm $ids >/dev/null 2>&1 || true
  ids=$(docker volume ls -q --filter "$label")
  [ -z "$ids" ] || docker volume rm -f $ids >/dev/null 2>&1 || true
}
trap cleanup EXIT
log "fault suite across containers (project $project)"
go test -tags e2edocker -count=1 -timeout "${E2E_DOCKER_TIMEOUT:-30m}" -v ./deploy/e2edocker/
