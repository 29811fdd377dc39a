package multiraft

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// Config tunes the multi-raft host. The zero value of a field means its
// default (see DefaultConfig).
type Config struct {
	// TickInterval is the raft tick. Default 100ms.
	TickInterval time.Duration
	// ElectionTicks is raft's election timeout in ticks (randomized up to
	// twice that by raft). Default 10.
	ElectionTicks int
	// HeartbeatTicks is the leader's heartbeat interval in ticks. Default 1.
	HeartbeatTicks int
	// Workers bounds the goroutines that process ranges in a scheduler
	// round: its ranges are split into at most this many contiguous
	// chunks, processed in parallel. Default 2*GOMAXPROCS (a chunk may
	// wait on storage now and then, e.g. installing a snapshot).
	Workers int
	// MaxSizePerMsg caps the entries bytes of one MsgApp. Default 1 MiB.
	MaxSizePerMsg uint64
	// MaxInflightMsgs caps unacknowledged MsgApps per follower. Default 256.
	MaxInflightMsgs int
	// MaxInflightBytes caps unacknowledged MsgApp bytes per follower.
	// Default 32 MiB.
	MaxInflightBytes uint64
	// MaxUncommittedEntriesSize caps the bytes of uncommitted entries of a
	// leader; further proposals are dropped (and re-proposed). Default 64 MiB.
	MaxUncommittedEntriesSize uint64
	// MaxCommittedSizePerReady caps the committed entries bytes handed to
	// one apply (at least one entry). Default 8 MiB.
	MaxCommittedSizePerReady uint64
	// MaxRangeRoundBytes caps what one range takes into a round: the
	// commands of the proposals it steps into raft, and the entries of the
	// appends it steps (at least one of each; the rest wait for the next
	// round). With MaxCommittedSizePerReady and MaxCommandBytes it bounds a
	// range's share of a round's write (here under 48 MiB, within stored's
	// batch limit of 64 MiB) however many large values arrive at once.
	// Default 8 MiB.
	MaxRangeRoundBytes uint64
	// MaxRoundWriteBytes: a round's writes larger than this go to stored
	// as several batches, cut between ranges (each range's writes stay in
	// one batch, so each range's state stays atomic). Default 32 MiB.
	MaxRoundWriteBytes uint64
	// EntryCacheEntries is how many entries of each log's tail stay in
	// memory. Default 256.
	EntryCacheEntries int
	// EntryCacheBytes caps the entry data each log's cache holds (it
	// keeps at least the last entry): a tail of large values is read
	// back from the engine instead of held. Default 4 MiB.
	EntryCacheBytes int
	// LogTruncateEntries truncates a log once it holds more entries than
	// this beyond the applied index's safe point. Default 1000.
	LogTruncateEntries uint64
	// LogKeepEntries is how many applied entries stay after a truncation,
	// for followers that are a little behind. Default 200.
	LogKeepEntries uint64
	// ReproposeTicks is how long a proposal waits for its entry to apply
	// before it is proposed again. Default 2*ElectionTicks.
	ReproposeTicks int
	// LivenessPingTicks is how often (in ticks) the store pings a peer
	// node it sent nothing to meanwhile: node liveness, which wakes the
	// quiesced ranges of a node that went silent, needs some traffic from
	// each peer within an election timeout. Default ElectionTicks/3 (at
	// least 1), so a peer is heard about 3 times per election timeout.
	LivenessPingTicks int
	// QuiesceAfterTicks is how long a leader stays idle and caught up
	// before it quiesces its range. Default ElectionTicks/2 (at least 2).
	QuiesceAfterTicks int
	// BootstrapCampaignsPerTick is how many ranges of a new cluster's
	// layout start their first election per tick: range i of the layout
	// starts its raft timers after i/BootstrapCampaignsPerTick ticks.
	// Default 1000 (10,000 ranges start over 10 ticks).
	BootstrapCampaignsPerTick int
	// MaxInboxMessages bounds the raft messages waiting in one replica's
	// inbox for its next round; beyond it messages are dropped (raft
	// retransmits), so a flood from a peer cannot grow memory without
	// bound. Default 4096.
	MaxInboxMessages int
	// ValueCacheBytes bounds the cache of recently written and read user
	// values that serves reads without a stored round trip (valuecache.go).
	// Default 64 MiB; negative disables it.
	ValueCacheBytes int
	// SnapshotChunkBytes is the target size of a snapshot chunk. Default 1 MiB.
	SnapshotChunkBytes int
	// ReplicaGCInterval is how often replicas that do not lead are checked
	// against the meta range: one its range's newer descriptor no longer
	// names is destroyed (replica GC). Default 10s.
	ReplicaGCInterval time.Duration
	// SplitCheckInterval is how often leaders look for ranges past
	// SplitBytes. Default 10s.
	SplitCheckInterval time.Duration
	// SplitBytes splits a range whose data (keys and values, as stored)
	// grows past it, at its middle key. Default 512 MiB; negative: no
	// automatic splits.
	SplitBytes int64
	// SplitQPS splits a range whose leader serves more requests per
	// second than this (measured over a SplitCheckInterval) at the median
	// of a sample of the keys requested. Default (0) or negative: no
	// splits by load (CockroachDB splits at 2500).
	SplitQPS float64
	// MaxKeyBytes and MaxValueBytes bound user keys and values. Defaults
	// 64 KiB and 8 MiB (a raft entry travels in one bus frame, at most
	// 16 MiB).
	MaxKeyBytes, MaxValueBytes int
	// MaxCommandBytes bounds one replicated command (a Batch's ops
	// together). Default 12 MiB.
	MaxCommandBytes int
	// DisableLeaseReads makes every linearizable read take a ReadIndex
	// round. Default false: a leader whose leadership a ReadIndex round
	// confirmed at time t serves reads locally until t + (ElectionTicks-1)
	// ticks - the clock's MaxOffset.
	DisableLeaseReads bool
	// StorageTimeout bounds one storage call made on behalf of raft.
	// Default 10s.
	StorageTimeout time.Duration
	// ClosedTimestampLag is how far behind its clock a leader closes
	// timestamps (see Closed timestamps in doc.go): a write proposed with
	// a timestamp that old is applied above it instead. It must exceed
	// twice the clock's MaxOffset (checked by NewStore). Default 3s.
	ClosedTimestampLag time.Duration
	// ClosedTimestampInterval is how often a leader sends the closed
	// timestamps of the ranges it leads to their other replicas. Default
	// 200ms.
	ClosedTimestampInterval time.Duration

	// Client sessions (session.go). These decide what a command does at
	// apply, so every node of a cluster must use the same values; raftd
	// has no flags for them.
	//
	// SessionMaxAge: a write of a session that would apply more than this
	// after it was issued (kvpb.Session.issued; or issued more than this
	// in the future) is refused, changing nothing. Default 1 minute.
	SessionMaxAge time.Duration
	// SessionIdle: a session without a write for this long is forgotten
	// (at a sweep, at most SessionMaxAge later). At least
	// 2*SessionMaxAge, which makes forgetting safe. Default 10 minutes.
	SessionIdle time.Duration
	// MaxSessions, MaxSessionBytes and MaxSessionAnswers bound one
	// range's sessions: how many, the bytes of their records, and the
	// answers one session keeps. A write that would go beyond, when no
	// session has been idle for 2*SessionMaxAge to make room, is refused
	// with ResourceExhausted. Defaults 10,000, 32 MiB and 8,192.
	MaxSessions, MaxSessionBytes, MaxSessionAnswers int

	// Versions (mvcc.go): every write keeps a version at its timestamp.
	// VersionRetention is how long a superseded version stays readable
	// (reads at a timestamp older than now minus this fail "compacted").
	// Default 4 hours.
	VersionRetention time.Duration
	// VersionGCInterval is how often the versions older than the
	// retention window are collected. Default 1 minute; negative
	// disables collection.
	VersionGCInterval time.Duration
	// VersionGCPageEntries is how many versions one collection step reads
	// before it writes its deletions and pauses (as long as the step
	// took), so collection takes at most about half of stored's time;
	// a scan at a timestamp reads the versions family in pages of as
	// many. Default 1000.
	VersionGCPageEntries int
	// DeleteRangeBatchBytes: the tombstone versions a DeleteRange writes
	// beyond this go to the engine ahead of the round's write, in
	// batches of about this size, so a range delete of any number of
	// keys never makes a write stored refuses (see applier.delRange).
	// Default 8 MiB.
	DeleteRangeBatchBytes uint64
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	c := Config{}
	c.fill()
	return c
}

func (c *Config) fill() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def64 := func(p *uint64, v uint64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.StorageTimeout == 0 {
		c.StorageTimeout = 10 * time.Second
	}
	if c.ClosedTimestampLag == 0 {
		c.ClosedTimestampLag = 3 * time.Second
	}
	if c.ClosedTimestampInterval == 0 {
		c.ClosedTimestampInterval = 200 * time.Millisecond
	}
	if c.SessionMaxAge == 0 {
		c.SessionMaxAge = time.Minute
	}
	if c.SessionIdle == 0 {
		c.SessionIdle = max(10*time.Minute, 2*c.SessionMaxAge)
	}
	def(&c.MaxSessions, 10000)
	def(&c.MaxSessionBytes, 32<<20)
	def(&c.MaxSessionAnswers, 8192)
	def(&c.ElectionTicks, 10)
	def(&c.HeartbeatTicks, 1)
	def(&c.Workers, 2*runtime.GOMAXPROCS(0))
	def64(&c.MaxSizePerMsg, 1<<20)
	def(&c.MaxInflightMsgs, 256)
	def64(&c.MaxInflightBytes, 32<<20)
	def64(&c.MaxUncommittedEntriesSize, 64<<20)
	def64(&c.MaxCommittedSizePerReady, 8<<20)
	def64(&c.MaxRangeRoundBytes, 8<<20)
	def64(&c.MaxRoundWriteBytes, 32<<20)
	def64(&c.DeleteRangeBatchBytes, 8<<20)
	def(&c.EntryCacheEntries, 256)
	def(&c.EntryCacheBytes, 4<<20)
	def(&c.ValueCacheBytes, 64<<20)
	c.fillVersions()
	def(&c.MaxInboxMessages, 4096)
	def64(&c.LogTruncateEntries, 1000)
	def64(&c.LogKeepEntries, 200)
	def(&c.ReproposeTicks, 2*c.ElectionTicks)
	def(&c.QuiesceAfterTicks, max(2, c.ElectionTicks/2))
	def(&c.LivenessPingTicks, max(1, c.ElectionTicks/3))
	def(&c.BootstrapCampaignsPerTick, 1000)
	def(&c.SnapshotChunkBytes, 1<<20)
	if c.ReplicaGCInterval == 0 {
		c.ReplicaGCInterval = 10 * time.Second
	}
	if c.SplitCheckInterval == 0 {
		c.SplitCheckInterval = 10 * time.Second
	}
	if c.SplitBytes == 0 {
		c.SplitBytes = 512 << 20
	}
	def(&c.MaxKeyBytes, kvpb.MaxKeyBytes)
	def(&c.MaxValueBytes, kvpb.MaxValueBytes)
	def(&c.MaxCommandBytes, 12<<20)
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.TickInterval < 0:
		return errors.New("multiraft: TickInterval must be positive")
	case c.ElectionTicks < 0 || c.HeartbeatTicks < 0:
		return errors.New("multiraft: ElectionTicks and HeartbeatTicks must be positive")
	case c.ElectionTicks != 0 && c.HeartbeatTicks != 0 && c.HeartbeatTicks >= c.ElectionTicks:
		return fmt.Errorf("multiraft: HeartbeatTicks %d must be below ElectionTicks %d", c.HeartbeatTicks, c.ElectionTicks)
	case c.Workers < 0:
		return errors.New("multiraft: Workers must be positive")
	case c.BootstrapCampaignsPerTick < 0:
		return errors.New("multiraft: BootstrapCampaignsPerTick must be positive")
	case c.ClosedTimestampLag < 0 || c.ClosedTimestampInterval < 0:
		return errors.New("multiraft: ClosedTimestampLag and ClosedTimestampInterval must be positive")
	case c.SessionMaxAge < 0 || c.SessionIdle < 0 || c.MaxSessions < 0 || c.MaxSessionBytes < 0 || c.MaxSessionAnswers < 0:
		return errors.New("multiraft: session limits must be positive")
	}
	maxAge := c.SessionMaxAge
	if maxAge == 0 {
		maxAge = DefaultConfig().SessionMaxAge
	}
	if c.SessionIdle != 0 && c.SessionIdle < 2*maxAge {
		return fmt.Errorf("multiraft: SessionIdle %v must be at least twice SessionMaxAge %v", c.SessionIdle, maxAge)
	}
	return nil
}
