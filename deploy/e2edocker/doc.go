// Package e2edocker is the fault suite across containers (`make
// e2e-docker`; its tests build only with -tags e2edocker). It brings up a
// cluster of three hosts from the images of `make images` with
// docker-compose (the file `pleiades deploy compose` makes, on a subnet
// so the test reaches the hosts from the docker host), checks writes and
// reads through every host, then injects faults one after another while a
// load through the Go client (shared/kvclient, default retries) records a
// history: docker kill of a host's raftd, docker kill of every container
// of a host (started again with one docker-compose start of its services,
// which follows their depends_on), a host cut off with docker network
// disconnect, a host frozen with docker pause. After each fault the host
// must serve again and catch up. The history is checked per key for linearizability (porcupine) and
// for lost acknowledged writes. Figures (cold start, stalls, recovery)
// are logged.
//
// Every container, network and volume of the run carries the compose
// project label; the suite removes them when it ends, failed or not, and
// scripts/e2e-docker.sh removes them again if the test binary itself dies.
// E2E_DOCKER_TAG picks the images (default latest).
package e2edocker
