// Package clockclient is the typed client of clockd's bus protocol
// (wire.ProtoClock, messages in shared/proto/clockpb): Now, Update,
// Status, WatchHealth, Probe and Offsets.
//
// Daemons keep their own hlc.Clock and fold in the timestamps this client
// returns (hlc.Clock.Update) so that they stay causally ahead of clockd;
// see package clockd.
package clockclient
