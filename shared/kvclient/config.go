package kvclient

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pleiades-db/pleiades/shared/bus"
)

// Defaults of Config.
const (
	DefaultAttemptTimeout     = time.Second
	DefaultSlowAttemptTimeout = 10 * time.Second
	DefaultSuspectFor         = 3 * time.Second
	DefaultHedgeAfter         = 250 * time.Millisecond
	DefaultRetryBackoffMin    = 10 * time.Millisecond
	DefaultRetryBackoffMax    = time.Second
	DefaultDescriptorsEvery   = time.Second
	DefaultMaxHintHops        = 3
)

// LargeRequestBytes is the encoded size above which a point request
// (a Put of a large value, a big Batch) is bounded by SlowAttemptTimeout
// instead of AttemptTimeout.
const LargeRequestBytes = 256 << 10

// Config configures a Client. The zero value of each optional field means
// its default.
type Config struct {
	// Addrs lists raftd bus addresses ("host:port"); any of them serves any
	// request (forwarding to the leader), the client prefers leaders it
	// knows, and stale reads go to the first one that answers. Required,
	// at least one.
	Addrs []string
	// Bus is an existing, started bus endpoint to call through; the client
	// does not stop it. When nil the client starts its own endpoint with
	// TLS (or the certificates in CertsDir) and stops it on Close.
	Bus *bus.Bus
	// TLS is the mutual TLS configuration of the client's own endpoint
	// (node certificate and cluster CA). Used when Bus is nil; when TLS is
	// also nil, it is loaded from CertsDir.
	TLS *tls.Config
	// CertsDir holds ca.crt and the client's certificate: client.crt
	// (an application's, see `pleiades cert create-client`), else
	// admin.crt, else node.crt, with its key (see package tlsutil).
	// Used when Bus and TLS are nil.
	CertsDir string
	// ListenAddr is the UDP address of the client's own endpoint. Default
	// "127.0.0.1:0" when every address in Addrs is a loopback IP, else ":0".
	ListenAddr string
	// AttemptTimeout bounds one attempt of a quick call to one node: Get,
	// Put, Delete, CompareAndSwap and Batch requests of at most
	// LargeRequestBytes, and Descriptors. An attempt that times out is
	// retried on another node while the caller's context allows, and its
	// node becomes suspect (see SuspectFor). It is the failover time of
	// a call sent to a node that stopped answering. Default 1s.
	AttemptTimeout time.Duration
	// SlowAttemptTimeout bounds one attempt of calls whose work grows
	// with the data or the cluster: Init, DeleteRange, Scan pages,
	// Ranges and point requests above LargeRequestBytes. Default 10s, or
	// AttemptTimeout when that is longer.
	SlowAttemptTimeout time.Duration
	// SuspectFor is how long a node whose attempt timed out is avoided:
	// its cached leaderships and NotLeader hints naming it are skipped,
	// and round robin passes it over while another node is not suspect.
	// Calls pinned to it (Ranges) still go there. Default 3s.
	SuspectFor time.Duration
	// HedgeAfter is how long a Get waits for its node before it also
	// asks another node (not suspect, forwarding allowed) and takes the
	// first answer; the node that was passed over becomes suspect. Reads
	// only: they are safe to serve twice. Negative: never hedge.
	// Default 250ms.
	HedgeAfter time.Duration
	// RetryBackoffMin and RetryBackoffMax bound the jittered exponential
	// wait between attempts after Unavailable, NotLeader without a hint
	// or an attempt timeout. Defaults 10ms and 1s.
	RetryBackoffMin, RetryBackoffMax time.Duration
	// MaxAttempts caps the attempts of one operation; 0 means no cap
	// (the caller's context deadline bounds it).
	MaxAttempts int
	// MaxHintHops is how many NotLeader hints in a row are followed at
	// once before backing off. Default 3.
	MaxHintHops int
	// DescriptorsEvery is the least time between two refreshes of the
	// range cache from the Descriptors method. Default 1s.
	DescriptorsEvery time.Duration
	// System sets kvpb.Header.system on every request: the client may then
	// use keys under the daemon system prefixes (kvpb.DaemonPrefixes, e.g.
	// workflowd's 0x00 "wf/") and no other key beginning with 0x00. For
	// daemons; a Scan or DeleteRange must then stay inside one prefix.
	System bool
	// Logger receives debug logs of retries. Default: discard.
	Logger *slog.Logger
}

// withDefaults returns c with defaults filled in.
func (c Config) withDefaults() Config {
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.SlowAttemptTimeout == 0 {
		c.SlowAttemptTimeout = max(DefaultSlowAttemptTimeout, c.AttemptTimeout)
	}
	if c.HedgeAfter == 0 {
		c.HedgeAfter = DefaultHedgeAfter
	}
	if c.SuspectFor == 0 {
		c.SuspectFor = DefaultSuspectFor
	}
	if c.RetryBackoffMin == 0 {
		c.RetryBackoffMin = DefaultRetryBackoffMin
	}
	if c.RetryBackoffMax == 0 {
		c.RetryBackoffMax = DefaultRetryBackoffMax
	}
	if c.MaxHintHops == 0 {
		c.MaxHintHops = DefaultMaxHintHops
	}
	if c.DescriptorsEvery == 0 {
		c.DescriptorsEvery = DefaultDescriptorsEvery
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.ListenAddr == "" {
		c.ListenAddr = bus.ClientListenAddr(c.Addrs...)
	}
	return c
}

// Validate checks c and names the first bad field.
func (c Config) Validate() error {
	if len(c.Addrs) == 0 {
		return errors.New("client: Config.Addrs: at least one raftd address is required")
	}
	for _, a := range c.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" || port == "0" {
			return fmt.Errorf("client: Config.Addrs: %q is not host:port", a)
		}
	}
	if c.Bus == nil && c.TLS == nil && c.CertsDir == "" {
		return errors.New("client: Config: one of Bus, TLS or CertsDir is required")
	}
	if c.AttemptTimeout < 0 || c.SlowAttemptTimeout < 0 || c.SuspectFor < 0 || c.RetryBackoffMin < 0 || c.RetryBackoffMax < 0 || c.DescriptorsEvery < 0 {
		return errors.New("client: Config: durations must not be negative")
	}
	if c.RetryBackoffMax != 0 && c.RetryBackoffMin > c.RetryBackoffMax {
		return fmt.Errorf("client: Config.RetryBackoffMin %v exceeds RetryBackoffMax %v", c.RetryBackoffMin, c.RetryBackoffMax)
	}
	if c.MaxAttempts < 0 || c.MaxHintHops < 0 {
		return errors.New("client: Config: MaxAttempts and MaxHintHops must not be negative")
	}
	return nil
}
