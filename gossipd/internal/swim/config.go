package swim

import (
	"fmt"
	"time"
)

// Config tunes the protocol. The field comments give the LAN defaults
// (DefaultLANConfig); DefaultWANConfig and DefaultLocalConfig change the
// timers only.
type Config struct {
	// ProbeInterval is the time between two probes of this node (before
	// the local health multiplier). LAN 1 s, WAN 5 s, Local 1 s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long a direct probe waits for an ack before
	// indirect probes start; must be below ProbeInterval. LAN 500 ms,
	// WAN 3 s, Local 200 ms.
	ProbeTimeout time.Duration
	// IndirectChecks is how many members are asked to probe a silent
	// target. Default 3.
	IndirectChecks int
	// StreamFallback also probes a silent target over a reliable stream,
	// in parallel with the indirect probes. Default true.
	StreamFallback bool
	// SuspicionMult scales the minimum suspicion timeout:
	// SuspicionMult * max(1, log10(n)) * ProbeInterval. LAN 4, WAN 6, Local 3.
	SuspicionMult int
	// SuspicionMaxTimeoutMult is the ratio of the initial (maximum)
	// suspicion timeout to the minimum; confirmations from other members
	// shrink it toward the minimum. 1 disables dynamic suspicion. Default 6.
	SuspicionMaxTimeoutMult int
	// AwarenessMaxMultiplier bounds the local health multiplier that
	// stretches the probe interval and timeout when this node seems
	// unhealthy. 1 disables it. Default 8.
	AwarenessMaxMultiplier int
	// RetransmitMult: each broadcast is sent RetransmitMult *
	// ceil(log10(n+1)) times. LAN 4, WAN 4, Local 2.
	RetransmitMult int
	// GossipInterval is the time between gossip rounds that send queued
	// broadcasts to GossipNodes random members. LAN 200 ms, WAN 500 ms,
	// Local 100 ms.
	GossipInterval time.Duration
	// GossipNodes is the gossip fan-out. LAN 3, WAN 4, Local 3.
	GossipNodes int
	// GossipToTheDead is how long dead members still receive gossip, so
	// that they can refute. LAN 30 s, WAN 60 s, Local 15 s.
	GossipToTheDead time.Duration
	// PushPullInterval is the time between full-state exchanges with a
	// random member, stretched above 32 members by PushPullScale; 0
	// disables them. LAN 30 s, WAN 60 s, Local 15 s.
	PushPullInterval time.Duration
	// DeadNodeReclaim is how long after a member's death another address
	// may take its node id; 0 means at once (a restarted node reclaims its
	// id). Default 0.
	DeadNodeReclaim time.Duration
	// MaxPacketSize bounds an encoded datagram, in bytes. Default 1100
	// (bus.MaxDatagramPayload).
	MaxPacketSize int
	// MaxMetadataSize bounds a member's encoded metadata, in bytes.
	// Default 512.
	MaxMetadataSize int
}

// DefaultLANConfig returns timers for a single data center (memberlist's
// LAN profile).
func DefaultLANConfig() Config {
	return Config{
		ProbeInterval:           time.Second,
		ProbeTimeout:            500 * time.Millisecond,
		IndirectChecks:          3,
		StreamFallback:          true,
		SuspicionMult:           4,
		SuspicionMaxTimeoutMult: 6,
		AwarenessMaxMultiplier:  8,
		RetransmitMult:          4,
		GossipInterval:          200 * time.Millisecond,
		GossipNodes:             3,
		GossipToTheDead:         30 * time.Second,
		PushPullInterval:        30 * time.Second,
		MaxPacketSize:           1100,
		MaxMetadataSize:         512,
	}
}

// DefaultWANConfig returns timers for members spread over a wide area.
func DefaultWANConfig() Config {
	c := DefaultLANConfig()
	c.ProbeInterval = 5 * time.Second
	c.ProbeTimeout = 3 * time.Second
	c.SuspicionMult = 6
	c.GossipInterval = 500 * time.Millisecond
	c.GossipNodes = 4
	c.GossipToTheDead = 60 * time.Second
	c.PushPullInterval = 60 * time.Second
	return c
}

// DefaultLocalConfig returns faster timers for one host (pleiades dev,
// tests).
func DefaultLocalConfig() Config {
	c := DefaultLANConfig()
	c.ProbeTimeout = 200 * time.Millisecond
	c.SuspicionMult = 3
	c.RetransmitMult = 2
	c.GossipInterval = 100 * time.Millisecond
	c.GossipToTheDead = 15 * time.Second
	c.PushPullInterval = 15 * time.Second
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.ProbeInterval <= 0:
		return fmt.Errorf("swim: ProbeInterval %v must be positive", c.ProbeInterval)
	case c.ProbeTimeout <= 0 || c.ProbeTimeout >= c.ProbeInterval:
		return fmt.Errorf("swim: ProbeTimeout %v must be positive and below ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	case c.IndirectChecks < 0:
		return fmt.Errorf("swim: IndirectChecks %d must not be negative", c.IndirectChecks)
	case c.SuspicionMult < 1:
		return fmt.Errorf("swim: SuspicionMult %d must be at least 1", c.SuspicionMult)
	case c.SuspicionMaxTimeoutMult < 1:
		return fmt.Errorf("swim: SuspicionMaxTimeoutMult %d must be at least 1", c.SuspicionMaxTimeoutMult)
	case c.AwarenessMaxMultiplier < 1:
		return fmt.Errorf("swim: AwarenessMaxMultiplier %d must be at least 1", c.AwarenessMaxMultiplier)
	case c.RetransmitMult < 1:
		return fmt.Errorf("swim: RetransmitMult %d must be at least 1", c.RetransmitMult)
	case c.GossipInterval <= 0:
		return fmt.Errorf("swim: GossipInterval %v must be positive", c.GossipInterval)
	case c.GossipNodes < 1:
		return fmt.Errorf("swim: GossipNodes %d must be at least 1", c.GossipNodes)
	case c.GossipToTheDead < 0 || c.PushPullInterval < 0 || c.DeadNodeReclaim < 0:
		return fmt.Errorf("swim: GossipToTheDead, PushPullInterval and DeadNodeReclaim must not be negative")
	case c.MaxPacketSize < 256:
		return fmt.Errorf("swim: MaxPacketSize %d must be at least 256", c.MaxPacketSize)
	case c.MaxMetadataSize < 0:
		return fmt.Errorf("swim: MaxMetadataSize %d must not be negative", c.MaxMetadataSize)
	}
	return nil
}
