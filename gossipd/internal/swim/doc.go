// Package swim holds the parts of gossipd's SWIM + Lifeguard membership
// protocol: the protocol configuration and its LAN/WAN/Local profiles,
// Lifeguard's local health awareness and dynamic suspicion timeouts, the
// retransmit-limited broadcast queue that piggybacks dissemination on
// probes, the datagram codec, and State, the membership table with the
// incarnation rules (suspicion, refutation, dead, leave, rejoin, reclaim).
//
// Behaviour follows the SWIM paper (Das, Gupta, Motivala, DSN 2002) and
// Lifeguard (Dadgar, Phillips, Currey, 2018) as implemented by HashiCorp
// memberlist, which is the reference; the code is our own.
//
// The protocol engine that drives State (probe loop, indirect and stream
// fallback probes, buddy system, gossip rounds, push-pull) is not in this
// package yet.
package swim
