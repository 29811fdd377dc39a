// Package vivaldi computes Vivaldi network coordinates with the extensions
// of "Network Coordinates in the Wild" (Ledlie, Gardner, Seltzer, NSDI 2007):
// a height term for the access link, a per-node adjustment term averaged
// over a window of recent prediction errors, gravity toward the origin to
// stop the whole coordinate system drifting, and a per-peer latency filter
// (median of recent samples) that discards outlier round trips.
//
// A Client owns one node's coordinate. Each probe round trip to a peer is
// fed to Update together with the coordinate the peer sent in its ack; the
// estimated RTT between any two coordinates is DistanceTo. Coordinates are
// in seconds.
//
// Defaults (DefaultConfig) follow the values the original Vivaldi paper
// (Dabek et al., SIGCOMM 2004: ce = cc = 0.25) and the Ledlie paper
// (height, 4+ dimensions, latency filter) recommend, as also used by Serf's
// coordinate package: 8 dimensions, error max 1.5, adjustment window 20,
// minimum height 10 µs, latency filter of 3 samples, gravity rho 150.
//
// Inputs are validated: a round trip outside (0, MaxRTT] or a peer
// coordinate with NaN/Inf or the wrong dimensionality is rejected with an
// error, and if the local coordinate ever becomes invalid it is reset to
// the origin (counted in Stats).
//
// A Client is safe for concurrent use.
package vivaldi
