# Pleiades developer entry points. Each target is a thin wrapper over a
# script in scripts/ so CI and developers run the same thing.
SHELL := /bin/bash
DATA ?= ./data
NODES ?= 3

.PHONY: all deps build test test-fulldisk run dev proto bench bench-kv bench-watch bench-msg bench-ranges bench-workflows e2e-faults clean verify images compose e2e-docker

all: build

## deps: install missing apt packages (librocksdb-dev, ...) and Go modules
deps:
	@./scripts/deps.sh

## build: every daemon and the pleiades CLI into ./bin
build: deps
	@./scripts/build.sh >/dev/null

## test: deps, verify, vet, standalone module builds, go test -race everywhere
test: deps
	@./scripts/test.sh

## test-fulldisk: the full-disk suite, e2e faults on a full follower included (root mounts tmpfs; figures in its log)
test-fulldisk: deps
	@./scripts/test-fulldisk.sh

## verify: gofmt, tidy go.mod files, module boundaries (seconds; part of test)
verify:
	@./scripts/verify.sh

## run: one node's whole suite in the foreground, data in ./data (Ctrl-C stops it)
run: build
	./bin/pleiades up --dev --data-dir $(DATA)

## dev: a local cluster of $(NODES) nodes on loopback (Ctrl-C stops it)
dev: build
	./bin/pleiades dev --nodes $(NODES) --data-dir $(DATA)/dev

## proto: regenerate Go code from shared/proto (needs protoc 3.21.12)
proto:
	@WITH_PROTOC=1 ./scripts/deps.sh
	@./scripts/genproto.sh

## bench: the Go benchmarks of every module (long; not part of test)
bench: deps
	@./scripts/bench.sh

## bench-kv: etcd-shaped put/get workloads on a fresh 3-node local cluster per range count, with per-op CPU and the ratio table (RANGES="1 16 256", ETCD=1 runs etcd first)
bench-kv: build
	@./scripts/bench-kv.sh $(or $(RANGES),1)

## bench-ranges: a replica added to a 1 GiB range next to cp -r and dd on the same disk (MIB=1024), then puts with automatic splits off and on (PUTS=200000, SPLIT_MIB=4, ROUNDS=2)
bench-ranges: build
	@./scripts/bench-ranges.sh add $(or $(MIB),1024)
	@./scripts/bench-ranges.sh split $(or $(PUTS),200000)

## bench-watch: watch event latency (1 and 1,000 watchers), put at 64 clients and memory per idle raftd watcher on a fresh 3-node cluster per round (ROUNDS=2; ETCD=1 alternates rounds with etcd v3.6.8)
bench-watch: build
	@./scripts/bench-watch.sh $(or $(ROUNDS),2)

## e2e-faults: the KV linearizability fault tests (pause, kill, one-way partition of a leader; splits and replica changes under kill and pause) 5 rounds over (ROUNDS=5)
e2e-faults: deps
	@PLEIADES_E2E_FAULT_ROUNDS=$(or $(ROUNDS),5) go test ./deploy/e2e/ -run 'TestKVLinearizableUnderFaults|TestKVReplicaChangesUnderFaults' -count=1 -v -timeout 90m

## bench-workflows: workflowd steps/s and latency next to KV puts on a fresh 3-node cluster (INSTANCES=1000, WAITING=0)
bench-workflows: build
	@./scripts/bench-workflows.sh $(or $(INSTANCES),1000) $(or $(WAITING),0)

## images: FROM scratch images of every daemon, the CLI and hostns (static binaries, nothing pulled)
images: deps
	@./scripts/images.sh

## compose: regenerate docker-compose.yml (HOSTS=3)
compose: build
	./bin/pleiades deploy compose --hosts $(or $(HOSTS),3) > docker-compose.yml

## e2e-docker: the fault suite across containers (builds the images, drives docker-compose)
e2e-docker: images
	@./scripts/e2e-docker.sh

## bench-msg: NATS pub/sub through msgd vs a plain nats-server, and JetStream R3, on a fresh 3-node local cluster
bench-msg: build
	@./scripts/bench-msg.sh $(ARGS)

## clean: remove binaries and the default data dir
clean:
	rm -rf ./bin $(DATA)
