// Package version reports the build version of a Pleiades binary.
//
// Release builds set it with the linker:
//
//	go build -ldflags "-X github.com/pleiades-db/pleiades/shared/version.version=v0.3.0" ./cmd/raftd
//
// Without -X, String falls back to the main module's version from the build
// info ("(devel)" for a workspace build), suffixed with the VCS revision
// when it was stamped.
package version

import "runtime/debug"

// version is set with -ldflags "-X .../shared/version.version=...". It is
// written only by the linker.
var version string

// String returns the build version.
func String() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
