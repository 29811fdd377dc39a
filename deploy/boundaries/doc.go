// Package boundaries holds the test that keeps the repository's module
// boundaries (it has no code of its own). The import graph is a star:
//
//   - shared imports nothing of the repository but shared;
//   - a daemon module (stored, raftd, gossipd, clockd, workflowd, and any
//     module not named below) imports only itself and shared: daemons
//     talk over the bus, never through each other's code;
//   - services (the pleiades CLI, its supervisor, msgd) imports only
//     itself and shared;
//   - deploy imports everything: it is where daemons meet in tests.
//
// Each rule holds for every .go file, tests included, and for each
// go.mod's requirements. The pleiades binary must also build without cgo
// and link no daemon code, RocksDB binding, memberlist or NATS server (the
// NATS client is fine): `go list -deps` of services/cmd/pleiades with
// CGO_ENABLED=0 must resolve every package.
//
// `make test` runs it with every other test; `make verify` runs it alone.
package boundaries
