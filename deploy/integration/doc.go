// Package integration holds in-process tests that need several daemons'
// importable packages at once (the Go client against real raftd servers,
// for instance). Only the deploy module may import every daemon, so such
// tests live here rather than beside the code they exercise.
package integration
