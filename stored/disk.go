package stored

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

// AutoSize, as Config.MinFreeBytes or Config.BallastBytes, sizes the floor
// or the ballast from the filesystem's size (see Config).
const AutoSize = -1

// Auto sizes: the floor is 2% of the filesystem, at least 64 MiB, at most
// 2 GiB and at most a quarter of it; the ballast 1%, at most 1 GiB.
const (
	autoFloorMin     = 64 << 20
	autoFloorMax     = 2 << 30
	autoBallastMax   = 1 << 30
	ballastFile      = "ballast"
	rocksRetryAfter  = time.Second
	ballastChunkSize = 1 << 20
	// inlineCheckAfter: near the floor, a write finding the last read of
	// the free space older than this reads it again first, so that
	// another process filling the disk meets a refusal within about a
	// millisecond, long before RocksDB's next write-ahead log block.
	inlineCheckAfter = time.Millisecond
)

func autoFloor(total uint64) uint64 {
	return min(max(total/50, autoFloorMin), autoFloorMax, total/4)
}

func autoBallast(total uint64) uint64 { return min(total/100, autoBallastMax) }

// StatFS reads the space of the filesystem holding path: the bytes
// available to an unprivileged writer (statfs f_bavail) and its size.
type StatFS func(path string) (avail, total uint64, err error)

func statFS(path string) (avail, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// diskInput is what one check of the free space decides from.
type diskInput struct {
	avail, total uint64
	// written is what writes admitted since avail was read add (their
	// batch bytes): the estimate keeps refusals ahead of RocksDB within a
	// burst between two checks.
	written uint64
	floor   uint64
	// ballast is the configured ballast size (0: none), present whether
	// the file is on disk.
	ballast uint64
	present bool
	// wasFull is the verdict in force; rocks is RocksDB's own
	// out-of-space error, if one is in force.
	wasFull bool
	rocks   bool
}

// diskVerdict is the outcome of one check.
type diskVerdict struct {
	full, reserveFull bool
	// release and create ask for the ballast to be removed or made.
	release, create bool
}

// decide is the free-space policy, a pure function of the input:
//
//   - the space that counts is the free space less the ballast when its
//     file is missing (released, or deleted by an operator): stored means
//     to re-create it, so releasing it never lets writes in by itself;
//   - writes are refused while that is below the floor, and accepted
//     again once it is back above the floor plus an eighth (hysteresis:
//     no flapping around the floor);
//   - reserve writes are refused below half the floor of actual free
//     space, or while RocksDB reports the disk full;
//   - on a full disk the ballast is released (RocksDB's flushes and
//     compactions, and the reserve writes, get its room); with room again
//     it is re-created before writes resume.
func decide(in diskInput) diskVerdict {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	var debt uint64
	if !in.present {
		debt = in.ballast
	}
	eff := sub(sub(in.avail, debt), in.written)
	need := in.floor
	if in.wasFull {
		need += in.floor / 8
	}
	v := diskVerdict{
		full:        in.rocks || (in.floor > 0 && eff < need),
		reserveFull: in.rocks || sub(in.avail, in.written) < in.floor/2,
	}
	if in.ballast > 0 {
		v.release = v.full && in.present
		v.create = !v.full && !in.present
	}
	return v
}

// diskMonitor watches the free space of stored's filesystem and decides
// which writes stored admits (decide). A goroutine of the server reads
// the space every Config.DiskCheckInterval (and at once when a write or
// RocksDB brings news), releases and re-creates the ballast file, logs
// and publishes changes (WatchDisk, /v1/store, metrics, the "disk"
// condition of readiness).
type diskMonitor struct {
	dir         string
	ballastPath string
	nodeID      uint64
	interval    time.Duration
	cfgFloor    int64
	cfgBallast  int64
	log         *slog.Logger
	statfs      StatFS
	now         func() time.Time
	// kick asks the loop for a check now.
	kick chan struct{}

	refusals, reserveRefusals atomic.Uint64

	mu struct {
		sync.Mutex
		// resolved is set once the first statfs sized the floor and the
		// ballast; until then (and if statfs fails) nothing is refused
		// but by RocksDB.
		resolved       bool
		floor, ballast uint64
		avail          uint64
		written        uint64
		checked        time.Time // of avail
		rocks          string    // RocksDB's out-of-space error in force
		rocksAt        time.Time
		st             *storepb.DiskStatus
		notified       *storepb.DiskStatus // last published
		subs           map[chan *storepb.DiskStatus]struct{}
		statfsFailed   bool
	}
}

func newDiskMonitor(cfg Config, nodeID uint64, statfs StatFS, log *slog.Logger, now func() time.Time) *diskMonitor {
	if statfs == nil {
		statfs = statFS
	}
	m := &diskMonitor{
		dir: cfg.Dir, ballastPath: filepath.Join(cfg.Dir, ballastFile), nodeID: nodeID,
		interval: cfg.DiskCheckInterval, cfgFloor: cfg.MinFreeBytes, cfgBallast: cfg.BallastBytes,
		log: log.With(slog.String("component", "disk")), statfs: statfs, now: now,
		kick: make(chan struct{}, 1),
	}
	m.mu.st = &storepb.DiskStatus{NodeId: nodeID, Path: cfg.DBDir()}
	m.mu.subs = map[chan *storepb.DiskStatus]struct{}{}
	return m
}

// start sizes the floor and ballast and makes the first check (creating
// the ballast when there is room for it).
func (m *diskMonitor) start() {
	if err := os.MkdirAll(m.dir, 0o750); err != nil {
		m.log.Warn("cannot create the data directory", slog.Any("error", err))
	}
	_ = os.Remove(m.ballastPath + ".tmp") // what a crash mid-creation left
	m.check()
}

// loop checks every interval, or when kicked, until stopc closes.
func (m *diskMonitor) loop(stopc <-chan struct{}) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-stopc:
			return
		case <-t.C:
		case <-m.kick:
		}
		m.check()
	}
}

func (m *diskMonitor) kickLoop() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// ballastOnDisk reports whether the ballast file is there at its size;
// one of another size (the configuration changed) is removed.
func (m *diskMonitor) ballastOnDisk(size uint64) bool {
	fi, err := os.Stat(m.ballastPath)
	if err != nil {
		return false
	}
	if size > 0 && uint64(fi.Size()) == size {
		return true
	}
	if err := os.Remove(m.ballastPath); err == nil {
		m.log.Info("ballast file of another size removed", slog.String("path", m.ballastPath), slog.Int64("bytes", fi.Size()))
	}
	return false
}

// check reads the free space and applies the policy.
func (m *diskMonitor) check() {
	m.mu.Lock()
	written := m.mu.written
	m.mu.Unlock()
	avail, total, err := m.statfs(m.dir)
	m.mu.Lock()
	if err != nil {
		if !m.mu.statfsFailed {
			m.log.Warn("free space unknown; only RocksDB's own out-of-space errors refuse writes", slog.Any("error", err))
			m.mu.statfsFailed = true
		}
		m.mu.Unlock()
		return
	}
	m.mu.statfsFailed = false
	if !m.mu.resolved {
		m.mu.resolved = true
		m.mu.floor, m.mu.ballast = resolveSize(m.cfgFloor, total, autoFloor), resolveSize(m.cfgBallast, total, autoBallast)
	}
	ballast := m.mu.ballast
	m.mu.Unlock()
	present := m.ballastOnDisk(ballast)

	m.mu.Lock()
	m.mu.written -= min(written, m.mu.written)
	m.mu.avail, m.mu.checked = avail, m.now()
	if m.mu.rocks != "" && m.now().Sub(m.mu.rocksAt) >= rocksRetryAfter {
		// Let writes try again: RocksDB recovers by itself once space
		// is back; a write still refused brings the error back.
		m.mu.rocks = ""
	}
	v := decide(diskInput{avail: avail, total: total, written: m.mu.written, floor: m.mu.floor,
		ballast: ballast, present: present, wasFull: m.mu.st.GetFull(), rocks: m.mu.rocks != ""})
	if v.create {
		// The ballast comes back before writes do (a check with it on
		// disk decides then); if it cannot be made, writes resume anyway.
		m.mu.Unlock()
		err := createBallast(m.ballastPath, int64(ballast))
		if err == nil {
			m.log.Info("ballast file created: delete it to give a full disk room to recover", slog.String("path", m.ballastPath), slog.Uint64("bytes", ballast))
			m.check()
			return
		}
		m.log.Warn("ballast file not created", slog.String("path", m.ballastPath), slog.Any("error", err))
		m.mu.Lock()
	}
	m.setLocked(v, avail, total, present)
	m.mu.Unlock()
	if v.release {
		if err := os.Remove(m.ballastPath); err != nil {
			m.log.Error("ballast file not released", slog.String("path", m.ballastPath), slog.Any("error", err))
			return
		}
		m.log.Warn("disk full: ballast file released so that RocksDB's flushes and compactions and the raft layer's small writes have room; writes stay refused until the free space, less the ballast to re-create, is back above the floor",
			slog.String("path", m.ballastPath), slog.Uint64("ballast_bytes", ballast))
		m.kickLoop()
	}
}

func resolveSize(cfg int64, total uint64, auto func(uint64) uint64) uint64 {
	if cfg == AutoSize {
		return auto(total)
	}
	return uint64(cfg)
}

// setLocked records a verdict, logs a change and publishes it. The free
// space reported is the one decided on: avail less the writes admitted
// since the periodic check.
func (m *diskMonitor) setLocked(v diskVerdict, avail, total uint64, present bool) {
	old := m.mu.st
	avail -= min(avail, m.mu.written)
	st := &storepb.DiskStatus{
		NodeId: m.nodeID, Full: v.full, ReserveFull: v.reserveFull, FreeBytes: avail, TotalBytes: total,
		FloorBytes: m.mu.floor, BallastBytes: m.mu.ballast, BallastPresent: present,
		SinceUnixNano: old.GetSinceUnixNano(), Path: old.GetPath(), Reason: m.mu.rocks,
	}
	if v.full != old.GetFull() || old.GetSinceUnixNano() == 0 {
		st.SinceUnixNano = m.now().UnixNano()
	}
	m.mu.st = st
	switch {
	case v.full && !old.GetFull():
		m.log.Warn("writes refused: "+st.Describe(), slog.Uint64("free_bytes", avail), slog.Uint64("floor_bytes", m.mu.floor))
	case !v.full && old.GetFull():
		m.log.Info("writes accepted again: "+st.Describe(), slog.Uint64("free_bytes", avail))
	}
	switch {
	case v.reserveFull && !old.GetReserveFull():
		m.log.Warn("reserve writes (raft votes and hard state, truncation) refused too: "+st.Describe(), slog.Uint64("free_bytes", avail))
	case !v.reserveFull && old.GetReserveFull():
		m.log.Info("reserve writes accepted again: "+st.Describe(), slog.Uint64("free_bytes", avail))
	}
	m.publishLocked()
}

// publishLocked sends the status to the WatchDisk subscribers when it
// changed in a way they act on: full, reserve_full or the ballast, or the
// free space by 1% of the filesystem while full.
func (m *diskMonitor) publishLocked() {
	st, last := m.mu.st, m.mu.notified
	if last != nil && st.GetFull() == last.GetFull() && st.GetReserveFull() == last.GetReserveFull() &&
		st.GetBallastPresent() == last.GetBallastPresent() && st.GetReason() == last.GetReason() &&
		(!st.GetFull() || absDiff(st.GetFreeBytes(), last.GetFreeBytes()) < st.GetTotalBytes()/100) {
		return
	}
	m.mu.notified = st
	for ch := range m.mu.subs {
		// Latest wins: a subscriber behind gets the newest status.
		select {
		case <-ch:
		default:
		}
		ch <- st
	}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// admit decides whether a write of size bytes may go ahead; reserve
// writes may use the space below the floor. An admitted write counts
// against the free space until the next check.
func (m *diskMonitor) admit(reserve bool, size int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.mu.st
	if (reserve && st.GetReserveFull()) || (!reserve && st.GetFull()) {
		return m.refuseLocked(reserve)
	}
	if !m.mu.resolved || m.mu.floor == 0 {
		return nil
	}
	if now := m.now(); m.mu.avail < 2*m.mu.floor+m.mu.ballast+m.mu.written && now.Sub(m.mu.checked) > inlineCheckAfter {
		// Near the floor: read the free space again before this write.
		// The writes admitted since the periodic check still count: the
		// space they take may not show yet (RocksDB preallocates its log
		// in blocks of about a memtable, so statfs moves in steps).
		if avail, total, err := m.statfs(m.dir); err == nil {
			m.mu.avail, m.mu.checked = avail, now
			m.decideLocked(avail, total)
			if st = m.mu.st; (reserve && st.GetReserveFull()) || (!reserve && st.GetFull()) {
				m.kickLoop() // the loop releases the ballast
				return m.refuseLocked(reserve)
			}
		}
	}
	m.mu.written += uint64(size)
	if reserve {
		return nil
	}
	var debt uint64
	if m.mu.ballast > 0 && !st.GetBallastPresent() {
		debt = m.mu.ballast
	}
	if m.mu.avail < m.mu.floor+debt+m.mu.written {
		// The writes since the last check reach the floor: refuse from
		// the next one on, and check now.
		m.kickLoop()
		m.decideLocked(m.mu.avail, st.GetTotalBytes())
	}
	return nil
}

// decideLocked applies the policy to the free space just read (the
// ballast as last seen) without touching the ballast: the loop does.
func (m *diskMonitor) decideLocked(avail, total uint64) {
	st := m.mu.st
	v := decide(diskInput{avail: avail, total: total, written: m.mu.written, floor: m.mu.floor, ballast: m.mu.ballast,
		present: st.GetBallastPresent(), wasFull: st.GetFull(), rocks: m.mu.rocks != ""})
	m.setLocked(v, avail, total, st.GetBallastPresent())
}

func (m *diskMonitor) refuseLocked(reserve bool) error {
	if reserve {
		m.reserveRefusals.Add(1)
	} else {
		m.refusals.Add(1)
	}
	return m.refusalLocked()
}

// refusalLocked is the error of a refused write.
func (m *diskMonitor) refusalLocked() error {
	return bus.WithReason(bus.CodeResourceExhausted, storepb.ReasonDiskFull, "stored: %s", describeFull(m.mu.st))
}

// noSpace records RocksDB's own out-of-space error (the floor was too
// low, or something else filled the disk): every write is refused until a
// check finds room again, at least rocksRetryAfter later. It returns the
// error for the caller.
func (m *diskMonitor) noSpace(err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.rocks == "" {
		m.log.Error("RocksDB is out of space; writes refused", slog.Any("error", err))
	}
	m.mu.rocks, m.mu.rocksAt = "RocksDB: "+err.Error(), m.now()
	st := m.mu.st
	m.setLocked(diskVerdict{full: true, reserveFull: true}, m.mu.avail, st.GetTotalBytes(), st.GetBallastPresent())
	m.kickLoop()
	return m.refusalLocked()
}

// status returns the current status (callers must not modify it).
func (m *diskMonitor) status() *storepb.DiskStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.st
}

// condition is the readiness condition "disk": it fails while writes are
// refused, naming why (the daemon stays ready: reads are served).
func (m *diskMonitor) condition(context.Context) error {
	st := m.status()
	if !st.GetFull() {
		return nil
	}
	return errors.New(describeFull(st) + "; writes refused, reads served")
}

// watch streams the status to send: the current one, then each change
// publishLocked passes on, until ctx or stopc ends.
func (m *diskMonitor) watch(ctx context.Context, stopc <-chan struct{}, send func(*storepb.DiskStatus) error) error {
	ch := make(chan *storepb.DiskStatus, 1)
	m.mu.Lock()
	first := m.mu.st
	m.mu.subs[ch] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.mu.subs, ch)
		m.mu.Unlock()
	}()
	if err := send(proto.Clone(first).(*storepb.DiskStatus)); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-stopc:
			return errUnavailable
		case st := <-ch:
			if err := send(proto.Clone(st).(*storepb.DiskStatus)); err != nil {
				return err
			}
		}
	}
}

// createBallast makes the ballast file: size bytes allocated on disk
// (fallocate, or zeros where the filesystem cannot), written under a
// temporary name and renamed, so a crash never leaves a short one under
// the real name.
func createBallast(path string, size int64) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		if !errors.Is(err, syscall.EOPNOTSUPP) {
			return fmt.Errorf("allocate %d bytes: %w", size, err)
		}
		if _, err := io.CopyN(f, zeros{}, size); err != nil {
			return fmt.Errorf("write %d bytes: %w", size, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// zeros reads as an endless stream of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	p = p[:min(len(p), ballastChunkSize)]
	clear(p)
	return len(p), nil
}
