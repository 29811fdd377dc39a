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
// Engine drives State over a small Transport (datagrams plus a
// request/response push-pull) and an injected Clock: shuffled round-robin
// probes stretched by the health score, indirect probes with nacks, the
// buddy system, the stream fallback probe, gossip rounds and push-pull.
// Tests run whole clusters in virtual time over a
// simulated network (sim_test.go) with per-link delay, loss, partitions,
// crashes and stalled nodes; the seed is logged.
package swim
