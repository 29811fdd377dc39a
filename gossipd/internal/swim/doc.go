// Package swim holds the parts of gossipd's SWIM + Lifeguard membership
// protocol: the protocol configuration and its LAN/WAN/Local profiles,
// Lifeguard's local health awareness and dynamic suspicion timeouts, the
// retransmit-limited broadcast queue that piggybacks dissemination on
// probes, and the datagram codec.
//
// Behaviour follows the SWIM paper (Das, Gupta, Motivala, DSN 2002) and
// Lifeguard (Dadgar, Phillips, Currey, 2018) as implemented by HashiCorp
// memberlist, which is the reference; the code is our own.
//
// The protocol engine (probe loop, indirect and stream fallback probes,
// incarnation rules, push-pull) is not in this package yet.
package swim
