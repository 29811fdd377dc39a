package multiraft

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Snapshots
//
// Sending: on a MsgSnap the leader opens an engine snapshot (stored's
// OpenSnapshot) and reads the applied state and descriptor recorded in
// it, so the data streamed from the same snapshot is exactly the state
// at that applied index; the MsgSnap's metadata is set to it (raft copes
// with an index other than the one it asked for). The range's data span
// is streamed (StreamRange) in chunks of about SnapshotChunkBytes (a
// goroutine of the send reads and decodes up to snapshotReadAhead chunks
// ahead): a start chunk (range descriptor set, not done), data chunks,
// chunks of the range's client session records (raft CF, from the same
// engine snapshot), and a done chunk carrying the MsgSnap, descriptor and
// applied state. The start chunk is acknowledged first; its answer's
// window (snapshotWindow) lets the sender number the chunks after it
// (seq 1, 2, ..., the done chunk last, sent once all others are
// acknowledged) and keep that many in flight, so the transfer of the next
// chunks overlaps with the receiver adding one to its ingest session; a
// receiver that offers no window gets them one at a time, unnumbered.
// The outcome always reaches raft (ReportSnapshot).
//
// Memory: a sender holds at most snapshotReadAhead decoded chunks and
// snapshotWindow chunks in flight (with their encodings), so about
// 2*(4+4)*SnapshotChunkBytes = 16 MiB per snapshot sent at the default
// chunk size; a receiver holds at most snapshotWindow chunks per inbound
// snapshot (chunks further ahead are refused) plus its ingest sessions'
// buffers (stored's client: 1 MiB being filled and up to 4 chunks of
// 1 MiB in flight to stored), about 16 MiB per snapshot received.
//
// Receiving: the start chunk opens an engine IngestRange session over
// the local replica's data span; numbered chunks wait for the ones
// before them (awaitTurn), and a repeat, a chunk beyond the window, a
// mix of numbered and unnumbered chunks or a chunk that waited past its
// sender's deadline (a gap) ends the session, as a bad entry does, with
// nothing written; each chunk's entries are added to it
// (nothing is written yet; memory is bounded by the session's buffer),
// and a digest of the entries is kept. The client session records are
// kept in memory (checked by decodeSessionRecords; bounded by the
// sessions' limits). The done chunk hands the MsgSnap to raft; when
// raft's Ready carries the snapshot, the install starts, in this order:
//
//  1. a synced write of the snapshot marker (raft CF, SnapshotMarkerKey):
//     the applied state, descriptor and digest of the snapshot, and in
//     the same write the session records, staged (StagedSessionKey);
//  2. Finish of the ingest: one synced atomic replacement of the span;
//  3. the round's synced batch: log reset to the snapshot (truncated
//     state), hard state, applied state, descriptor, the range's session
//     records replaced by the snapshot's, staged records and marker
//     deleted.
//
// Steps 1 and 2 run on a goroutine of their own, as replacing a large
// span takes long and the rounds serve every other range meanwhile; the
// replica sits the rounds out (its inbox waits) and holds the Ready until
// then. The round after that completes the Ready with step 3.
//
// A crash before 1 leaves the old state. A crash after 3 leaves the new
// one. A crash between 1 and 3 leaves the marker, and the data either
// old or the snapshot's (the ingest is atomic): at start the replica
// hashes its data span; if it matches the marker's digest, the data is
// the snapshot's and step 3 is completed from the marker (raft had
// already committed to this snapshot: its Ready replaced the log); if
// not, the ingest never happened and the marker is deleted, leaving the
// old, consistent state. Either way the applied index recorded is the
// one the data is at. A failure of step 1 or 2 while running is fatal
// for the store, like any failed round write (the marker is a reserve
// write, and stored takes the ingest's last frame from its reserve, so a
// full disk does not fail them); a restart recovers as
// above.

// snapshotIdleTimeout drops a partly received snapshot without news.
const snapshotIdleTimeout = time.Minute

type snapKey struct{ from, id uint64 }

type inboundSnapshot struct {
	last atomic.Int64 // unix nanos of the last chunk

	// mu serializes the chunks of one session and guards what follows
	// until the session is handed to its replica.
	mu     sync.Mutex
	ingest storage.Ingest
	// vingest replaces the span's versions (the versions family).
	vingest    storage.Ingest
	digest     hash.Hash
	start, end []byte

	desc    *kvpb.RangeDescriptor
	applied *raftmsgpb.AppliedState
	msg     *raftpb.Message
	// sessions are the client session records received, sessionBytes
	// their size; sessionTable is what they decode to (done chunk).
	sessions     []sessionRecord
	sessionBytes int
	sessionTable *sessionTable

	// seqMu guards the order of numbered chunks (SnapshotChunk.seq): next
	// is the seq to take next; turn is closed (and replaced) whenever
	// next moves or the session ends (ended), waking the chunks that wait
	// for their turn. unnumbered: the sender sends one chunk at a time.
	seqMu      sync.Mutex
	next       uint64
	turn       chan struct{}
	ended      bool
	unnumbered bool
}

func newInboundSnapshot(now time.Time) *inboundSnapshot {
	sn := &inboundSnapshot{next: 1, turn: make(chan struct{})}
	sn.last.Store(now.UnixNano())
	return sn
}

// awaitTurn waits until the chunk numbered seq (0: unnumbered) is the one
// the session takes next. A chunk below the next one, or a window or more
// ahead of it, or an unnumbered chunk in a numbered session (or the
// reverse), is refused; so is every chunk once the session ended.
func (sn *inboundSnapshot) awaitTurn(ctx context.Context, seq uint64) error {
	var idle *time.Timer
	defer func() {
		if idle != nil {
			idle.Stop()
		}
	}()
	for {
		sn.seqMu.Lock()
		next, turn, ended, unnumbered := sn.next, sn.turn, sn.ended, sn.unnumbered
		if !ended && seq == 0 && next == 1 {
			sn.unnumbered, unnumbered = true, true
		}
		sn.seqMu.Unlock()
		switch {
		case ended:
			return errSnapshotDropped
		case seq == 0 && !unnumbered, seq != 0 && unnumbered:
			return errors.New("numbered and unnumbered chunks mixed")
		case seq == 0 || seq == next:
			return nil
		case seq < next:
			return fmt.Errorf("chunk %d received again (next %d)", seq, next)
		case seq >= next+snapshotWindow:
			return fmt.Errorf("chunk %d beyond the window (next %d, window %d)", seq, next, snapshotWindow)
		}
		if idle == nil {
			idle = time.NewTimer(snapshotIdleTimeout)
		}
		select {
		case <-turn:
		case <-idle.C:
			return fmt.Errorf("chunk %d: chunk %d did not come", seq, next)
		case <-ctx.Done():
			return fmt.Errorf("chunk %d waiting for chunk %d: %w", seq, next, ctx.Err())
		}
	}
}

// took moves the session past the numbered chunk it took.
func (sn *inboundSnapshot) took(seq uint64) {
	if seq == 0 {
		return
	}
	sn.seqMu.Lock()
	if !sn.ended && sn.next == seq {
		sn.next++
		close(sn.turn)
		sn.turn = make(chan struct{})
	}
	sn.seqMu.Unlock()
}

// endTurns ends the session's order: every chunk waiting for its turn, and
// every later one, is refused.
func (sn *inboundSnapshot) endTurns() {
	sn.seqMu.Lock()
	if !sn.ended {
		sn.ended = true
		close(sn.turn)
	}
	sn.seqMu.Unlock()
}

// errSnapshotDropped refuses a chunk of a snapshot session that ended.
var errSnapshotDropped = errors.New("the snapshot was dropped")

// hashKV adds one data entry to a snapshot digest.
func hashKV(h hash.Hash, key, value []byte) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	h.Write(key)
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(value)))])
	h.Write(value)
}

// encodeMarker encodes a snapshot marker: the digest (32 bytes), the
// length of the applied state (uvarint), the applied state, the
// descriptor.
func encodeMarker(digest []byte, applied *raftmsgpb.AppliedState, desc *kvpb.RangeDescriptor) ([]byte, error) {
	ab, err := proto.Marshal(applied)
	if err != nil {
		return nil, err
	}
	db, err := proto.Marshal(desc)
	if err != nil {
		return nil, err
	}
	b := append([]byte(nil), digest...)
	b = binary.AppendUvarint(b, uint64(len(ab)))
	b = append(b, ab...)
	return append(b, db...), nil
}

func decodeMarker(b []byte) (digest []byte, applied *raftmsgpb.AppliedState, desc *kvpb.RangeDescriptor, err error) {
	if len(b) < sha256.Size {
		return nil, nil, nil, errors.New("snapshot marker too short")
	}
	digest, b = b[:sha256.Size], b[sha256.Size:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, nil, errors.New("snapshot marker: bad applied state length")
	}
	applied, desc = &raftmsgpb.AppliedState{}, &kvpb.RangeDescriptor{}
	if err := proto.Unmarshal(b[k:k+int(n)], applied); err != nil {
		return nil, nil, nil, fmt.Errorf("snapshot marker applied state: %w", err)
	}
	if err := proto.Unmarshal(b[k+int(n):], desc); err != nil {
		return nil, nil, nil, fmt.Errorf("snapshot marker descriptor: %w", err)
	}
	return digest, applied, desc, nil
}

// snapSpanOK reports whether a replica spanning local may install a
// snapshot spanning snap: the same span, or a part of it from the same
// start (the replica missed a split that the snapshot's state includes;
// the rest of its old span is the right range's, whose own replica or
// snapshot replaces that data here).
func snapSpanOK(local, snap *kvpb.RangeDescriptor) bool {
	if sameSpan(local, snap) {
		return true
	}
	return bytes.Equal(local.GetStartKey(), snap.GetStartKey()) && len(snap.GetEndKey()) > 0 &&
		(len(local.GetEndKey()) == 0 || bytes.Compare(snap.GetEndKey(), local.GetEndKey()) <= 0)
}

func sameSpan(a, b *kvpb.RangeDescriptor) bool {
	return bytes.Equal(a.GetStartKey(), b.GetStartKey()) && bytes.Equal(a.GetEndKey(), b.GetEndKey())
}

func (s *Store) hook(rangeID uint64, stage string) {
	if f := s.testHook.Load(); f != nil {
		(*f)(rangeID, stage)
	}
}

// snapInstall is a snapshot install in progress: the Ready that carries
// the snapshot waits in it while the data is replaced off the rounds.
type snapInstall struct {
	rd       raft.Ready
	ps       *inboundSnapshot
	err      error // set before finished
	finished atomic.Bool
}

// startInstallLocked starts installing the snapshot of rd (see Snapshots
// above): the marker and the ingest run on a goroutine of the store,
// which then schedules the replica; its next phase1 completes the Ready.
func (r *Replica) startInstallLocked(rd raft.Ready) error {
	idx := rd.Snapshot.GetMetadata().GetIndex()
	ps := r.mu.pendingSnaps[idx]
	delete(r.mu.pendingSnaps, idx)
	if ps == nil {
		return fmt.Errorf("range %d snapshot %d: %w", r.rangeID, idx, errSnapshotMismatch)
	}
	in := &snapInstall{rd: rd, ps: ps}
	r.install.Store(in)
	if !r.s.goAsync(func() {
		in.err = r.ingestSnapshot(rd.Snapshot, ps)
		in.finished.Store(true)
		r.s.enqueue(r.rangeID)
	}) {
		r.install.Store(nil)
		r.s.abortIngest(ps)
		return ErrStopped
	}
	return nil
}

// snapshotApplied is the applied state a snapshot installs.
func snapshotApplied(snap *raftpb.Snapshot, ps *inboundSnapshot) *raftmsgpb.AppliedState {
	applied := proto.Clone(ps.applied).(*raftmsgpb.AppliedState)
	applied.Index, applied.Term = snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	return applied
}

// ingestSnapshot writes the snapshot's marker, then has the engine replace
// the span's data with the received chunks (steps 1 and 2 above). It runs
// off the rounds and touches no raft state.
func (r *Replica) ingestSnapshot(snap *raftpb.Snapshot, ps *inboundSnapshot) error {
	idx := snap.GetMetadata().GetIndex()
	marker, err := encodeMarker(ps.digest.Sum(nil), snapshotApplied(snap, ps), ps.desc)
	if err != nil {
		r.s.abortIngest(ps)
		return err
	}
	ctx, cancel := context.WithTimeout(r.s.ctx, 10*r.s.cfg.StorageTimeout)
	defer cancel()
	mk := storage.SnapshotMarkerKey(r.rangeID)
	// The marker is small, and the data it stands for is staged already:
	// a reserve write, so an install under way completes on a full disk.
	// The snapshot's client session records are staged in the same write
	// (the marker must never be without them); they are usually a few KiB
	// (about the clients' writes in flight), at most the range's session
	// limits.
	ops := append(stagedSessionsOps(r.rangeID, ps.sessions), storage.Put(storage.Raft, mk, marker))
	if err := r.s.d.Engine.WriteReserve(ctx, ops, true); err != nil {
		r.s.abortIngest(ps)
		return fmt.Errorf("range %d snapshot %d marker: %w", r.rangeID, idx, err)
	}
	r.s.hook(r.rangeID, "marker")
	// The versions first: once the data is in (what recovery checks by
	// its digest), they are too.
	if err := ps.vingest.Finish(ctx); err != nil {
		r.s.abortIngest(ps)
		return fmt.Errorf("range %d snapshot %d versions ingest: %w", r.rangeID, idx, err)
	}
	ps.vingest = nil
	err = ps.ingest.Finish(ctx)
	// The span's data changed (or may have) outside the rounds' writes.
	r.s.vcache.clear()
	r.s.cutWatches(r.rangeID, "a snapshot was installed")
	if err != nil {
		return fmt.Errorf("range %d snapshot %d ingest: %w", r.rangeID, idx, err)
	}
	ps.ingest = nil
	r.s.hook(r.rangeID, "ingest")
	return nil
}

// installOpsLocked returns the round's writes that complete an ingested
// snapshot's install (step 3 above) and adopts its state.
func (r *Replica) installOpsLocked(snap *raftpb.Snapshot, ps *inboundSnapshot) ([]storage.Op, error) {
	idx, term := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	applied := snapshotApplied(snap, ps)
	ops, err := r.mu.log.snapshotOps(idx, term)
	if err != nil {
		return nil, err
	}
	ab, err := proto.Marshal(applied)
	if err != nil {
		return nil, err
	}
	db, err := proto.Marshal(ps.desc)
	if err != nil {
		return nil, err
	}
	ops = append(ops, storage.Put(storage.Raft, storage.AppliedStateKey(r.rangeID), ab),
		storage.Put(storage.Local, storage.ReplicaKey(r.rangeID), db))
	ops = append(ops, replaceSessionsOps(r.rangeID, ps.sessions)...)
	ops = append(ops, storage.Delete(storage.Raft, storage.SnapshotMarkerKey(r.rangeID)))
	r.mu.applied = applied
	r.mu.sessions = ps.sessionTable
	r.sessionCount.Store(int64(len(ps.sessionTable.m)))
	r.sessionBytes.Store(int64(ps.sessionTable.bytes))
	r.mu.log.applied, r.mu.log.appliedTerm = idx, term
	r.mu.log.cs = snap.GetMetadata().GetConfState()
	r.desc.Store(ps.desc)
	r.mu.desc = ps.desc
	r.s.metrics.snapshotsApplied.Add(1)
	return ops, nil
}

// stagedSessionsOps stages recs, a snapshot's client session records,
// replacing any staged before.
func stagedSessionsOps(rangeID uint64, recs []sessionRecord) []storage.Op {
	start, end := storage.StagedSessionSpan(rangeID)
	ops := []storage.Op{storage.DeleteRange(storage.Raft, start, end)}
	for _, rec := range recs {
		ops = append(ops, storage.Put(storage.Raft, storage.StagedSessionKey(rangeID, rec.id), rec.value))
	}
	return ops
}

// replaceSessionsOps replaces a range's client session records with recs
// and drops its staged ones.
func replaceSessionsOps(rangeID uint64, recs []sessionRecord) []storage.Op {
	start, end := storage.SessionSpan(rangeID)
	ops := []storage.Op{storage.DeleteRange(storage.Raft, start, end)}
	for _, rec := range recs {
		ops = append(ops, storage.Put(storage.Raft, storage.SessionKey(rangeID, rec.id), rec.value))
	}
	start, end = storage.StagedSessionSpan(rangeID)
	return append(ops, storage.DeleteRange(storage.Raft, start, end))
}

// dropPendingSnapsLocked aborts the received snapshots no Ready took.
func (r *Replica) dropPendingSnapsLocked() {
	for idx, ps := range r.mu.pendingSnaps {
		r.s.abortIngest(ps)
		delete(r.mu.pendingSnaps, idx)
	}
}

// abortIngest drops a snapshot's ingest session (stored would also expire
// it).
func (s *Store) abortIngest(sn *inboundSnapshot) {
	ins := []storage.Ingest{sn.ingest, sn.vingest}
	sn.ingest, sn.vingest = nil, nil
	for _, in := range ins {
		if in == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.StorageTimeout)
		if err := in.Abort(ctx); err != nil {
			s.log.Debug("snapshot ingest abort failed", slog.Any("error", err))
		}
		cancel()
	}
}

// sendSnapshotLocked streams a snapshot to the replica m is for, on a
// store goroutine; the outcome is reported to raft.
func (r *Replica) sendSnapshotLocked(m *raftpb.Message) {
	to := m.GetTo()
	if r.mu.snapSending[to] {
		return
	}
	node := r.nodeOfReplica(to)
	if f := r.mu.snapFails[to]; node == 0 || (f != nil && time.Now().Before(f.retryAt)) {
		// Unknown node, or the last sends failed: raft probes again
		// after a heartbeat interval; the send waits out its backoff.
		r.mu.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	msg := proto.Clone(m).(*raftpb.Message)
	r.mu.snapSending[to] = true
	r.s.metrics.snapshotsSent.Add(1)
	if !r.s.goAsync(func() {
		err := r.streamSnapshot(r.s.ctx, node, msg)
		if err != nil {
			err = fmt.Errorf("to node %d: %w", node, err)
		}
		r.in.Lock()
		r.in.reports = append(r.in.reports, snapReport{to: to, err: err})
		r.in.Unlock()
		r.s.enqueue(r.rangeID)
	}) {
		delete(r.mu.snapSending, to)
		r.mu.rn.ReportSnapshot(to, raft.SnapshotFailure)
	}
}

// streamSnapshot sends the range's data at a consistent engine snapshot,
// chunk by chunk, and last the MsgSnap describing it.
func (r *Replica) streamSnapshot(ctx context.Context, node uint64, msg *raftpb.Message) error {
	eng := r.s.d.Engine
	octx, cancel := r.s.storageCtx()
	snap, err := eng.OpenSnapshot(octx)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.s.cfg.StorageTimeout)
		_ = snap.Release(rctx)
		cancel()
	}()
	applied, desc := &raftmsgpb.AppliedState{}, &kvpb.RangeDescriptor{}
	for _, x := range []struct {
		cf  storage.CF
		key []byte
		m   proto.Message
	}{{storage.Raft, storage.AppliedStateKey(r.rangeID), applied}, {storage.Local, storage.ReplicaKey(r.rangeID), desc}} {
		gctx, cancel := r.s.storageCtx()
		v, ok, err := snap.Get(gctx, x.cf, x.key)
		cancel()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("range %d: no %s key %x in the engine", r.rangeID, x.cf, x.key)
		}
		if err := proto.Unmarshal(v, x.m); err != nil {
			return fmt.Errorf("range %d: decode %s key %x: %w", r.rangeID, x.cf, x.key, err)
		}
	}
	md := msg.GetSnapshot().GetMetadata()
	md.Index, md.Term = proto.Uint64(applied.GetIndex()), proto.Uint64(applied.GetTerm())
	msgBytes, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	id := r.s.snapSeq.Add(1)
	send := func(ctx context.Context, c *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error) {
		c.SnapshotId, c.RangeId, c.FromNode = id, r.rangeID, r.s.d.NodeID
		sctx, cancel := context.WithTimeout(ctx, 10*r.s.cfg.StorageTimeout)
		defer cancel()
		return r.s.d.Transport.SendSnapshotChunk(sctx, node, c)
	}
	ack, err := send(ctx, &raftmsgpb.SnapshotChunk{RangeDescriptor: desc})
	if err != nil {
		return err
	}
	// The chunks are read from the engine (and decoded) by a goroutine of
	// this call, up to snapshotReadAhead of them ahead of the ones being
	// sent, so that reading overlaps with the sends.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *raftmsgpb.SnapshotChunk, snapshotReadAhead)
	readErr := make(chan error, 1)
	go func() {
		defer close(chunks)
		readErr <- r.readSnapshotChunks(rctx, snap, desc, func(c *raftmsgpb.SnapshotChunk) error {
			select {
			case chunks <- c:
				return nil
			case <-rctx.Done():
				return rctx.Err()
			}
		})
	}()
	window := min(int(ack.GetWindow()), snapshotWindow)
	seq, sendErr := sendSnapshotChunks(rctx, window, chunks, send)
	cancel()
	for range chunks { // the reader stops at its next chunk
	}
	if err := <-readErr; sendErr == nil && err != nil {
		return err
	}
	if sendErr != nil {
		return sendErr
	}
	done := &raftmsgpb.SnapshotChunk{Done: true, Message: msgBytes, RangeDescriptor: desc, Applied: applied}
	if window > 1 {
		done.Seq = seq + 1
	}
	_, err = send(ctx, done)
	return err
}

// sendSnapshotChunks sends the chunks until the channel closes or a send
// fails: one at a time, unnumbered, if window is at most 1, else numbered
// from 1 with up to window of them in flight (each send on a goroutine of
// this call, all waited for). It returns the last seq used and the first
// error; after an error, the sends in flight are cancelled and the
// chunks left unread.
func sendSnapshotChunks(ctx context.Context, window int, chunks <-chan *raftmsgpb.SnapshotChunk,
	send func(context.Context, *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error)) (uint64, error) {
	if window <= 1 {
		for c := range chunks {
			if _, err := send(ctx, c); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		seq      uint64
	)
	slots := make(chan struct{}, window)
loop:
	for c := range chunks {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		if ctx.Err() != nil { // a send failed while a slot was free
			break
		}
		seq++
		c.Seq = seq
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if _, err := send(ctx, c); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return seq, firstErr
}

// snapshotWindow is how many numbered chunks of one snapshot a receiver
// takes in flight (SnapshotAck.window) and a sender keeps in flight: the
// transfer of the next chunks overlaps with the receiver adding one to
// its ingest session.
const snapshotWindow = 4

// snapshotReadAhead is how many chunks a snapshot's sender reads ahead of
// the one it sends.
const snapshotReadAhead = 4

// readSnapshotChunks reads, from the engine snapshot snap, the chunks of
// the range desc's snapshot between its start and done chunks: its data
// and its versions, read at the same time (two chains of reads from the
// engine, each one chunk at a time: a receiver adds data and version
// chunks to separate ingest sessions, so only the order within each
// matters), then its client session records; emit takes each, one at a
// time.
func (r *Replica) readSnapshotChunks(ctx context.Context, snap storage.Snapshot, desc *kvpb.RangeDescriptor, emit func(*raftmsgpb.SnapshotChunk) error) error {
	start, end := clipSpan(nil, nil, desc)
	var emitMu sync.Mutex
	emitOne := func(c *raftmsgpb.SnapshotChunk) error {
		emitMu.Lock()
		defer emitMu.Unlock()
		return emit(c)
	}
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		firstMu sync.Mutex
		first   error
	)
	fail := func(err error) { // keeps the first failure, stops both chains
		firstMu.Lock()
		if first == nil {
			first = err
		}
		firstMu.Unlock()
		cancel()
	}
	vdone := make(chan struct{})
	go func() { // waited for below
		defer close(vdone)
		vstart, vend := storage.VersionSpan(start, end)
		err := snap.StreamRange(vctx, storage.Versions, vstart, vend, r.s.cfg.SnapshotChunkBytes, func(kvs []storage.KV) error {
			c := &raftmsgpb.SnapshotChunk{Versions: make([]*raftmsgpb.VersionEntry, 0, len(kvs))}
			for _, kv := range kvs {
				c.Versions = append(c.Versions, &raftmsgpb.VersionEntry{Key: kv.Key, Value: kv.Value})
			}
			return emitOne(c)
		})
		if err != nil {
			fail(err)
		}
	}()
	err := snap.StreamRange(vctx, storage.Data, start, end, r.s.cfg.SnapshotChunkBytes, func(kvs []storage.KV) error {
		c := &raftmsgpb.SnapshotChunk{Kvs: make([]*kvpb.KeyValue, 0, len(kvs))}
		for _, kv := range kvs {
			m, v, deleted, err := storage.DecodeRecord(kv.Value)
			if err == nil && deleted {
				err = storage.ErrBadEnvelope
			}
			if err != nil {
				return fmt.Errorf("range %d key %q: %w", r.rangeID, kv.Key, err)
			}
			c.Kvs = append(c.Kvs, &kvpb.KeyValue{Key: kv.Key, Value: valueOf(m, v)})
		}
		return emitOne(c)
	})
	if err != nil {
		fail(err)
	}
	<-vdone
	if first != nil {
		return first
	}
	sstart, send := storage.SessionSpan(r.rangeID)
	return snap.StreamRange(ctx, storage.Raft, sstart, send, r.s.cfg.SnapshotChunkBytes, func(kvs []storage.KV) error {
		recs, err := sessionRecordsOf(r.rangeID, kvs)
		if err != nil {
			return err
		}
		sc := &raftmsgpb.SnapshotChunk{Sessions: make([]*raftmsgpb.SessionEntry, 0, len(recs))}
		for _, rec := range recs {
			sc.Sessions = append(sc.Sessions, &raftmsgpb.SessionEntry{SessionId: rec.id, State: rec.value})
		}
		return emit(sc)
	})
}

// HandleSnapshot receives one snapshot chunk. A start chunk (descriptor
// set, not done) opens an ingest session over the local replica's data
// span; every chunk's entries go into it; the done chunk hands the
// session and the MsgSnap to the replica, which installs both in its next
// round (see Snapshots above).
func (s *Store) HandleSnapshot(ctx context.Context, c *raftmsgpb.SnapshotChunk) (*raftmsgpb.SnapshotAck, error) {
	s.metrics.snapshotChunksRecv.Add(1)
	k := snapKey{c.GetFromNode(), c.GetSnapshotId()}
	isStart := c.GetRangeDescriptor() != nil && !c.GetDone()
	now := time.Now()
	var stale []*inboundSnapshot
	s.snaps.Lock()
	sn := s.snaps.in[k]
	if isStart && sn != nil {
		delete(s.snaps.in, k)
		stale = append(stale, sn)
		sn = nil
	}
	// Forget snapshots whose sender went quiet.
	for ok, o := range s.snaps.in {
		if now.Sub(time.Unix(0, o.last.Load())) > snapshotIdleTimeout {
			delete(s.snaps.in, ok)
			stale = append(stale, o)
		}
	}
	if isStart {
		if c.GetSeq() != 0 {
			s.snaps.Unlock()
			return nil, fmt.Errorf("multiraft: start chunk of snapshot %d from node %d numbered %d", c.GetSnapshotId(), c.GetFromNode(), c.GetSeq())
		}
		sn = newInboundSnapshot(now) // last set before others can see it, or they would expire it
		sn.mu.Lock()
		s.snaps.in[k] = sn
	}
	s.snaps.Unlock()
	for _, o := range stale {
		o.endTurns()
		o.mu.Lock()
		s.abortIngest(o)
		o.mu.Unlock()
	}
	if sn == nil {
		return nil, fmt.Errorf("multiraft: chunk of unknown snapshot %d from node %d", c.GetSnapshotId(), c.GetFromNode())
	}
	fail := func(err error) (*raftmsgpb.SnapshotAck, error) {
		sn.endTurns()
		s.snaps.Lock()
		if s.snaps.in[k] == sn {
			delete(s.snaps.in, k)
		}
		s.snaps.Unlock()
		s.abortIngest(sn)
		return nil, err
	}
	if !isStart {
		// Numbered chunks may arrive out of order (several in flight):
		// each waits for the ones before it.
		if err := sn.awaitTurn(ctx, c.GetSeq()); err != nil {
			err = fmt.Errorf("multiraft: snapshot %d from node %d: %w", c.GetSnapshotId(), c.GetFromNode(), err)
			if errors.Is(err, errSnapshotDropped) {
				return nil, err
			}
			sn.mu.Lock()
			defer sn.mu.Unlock()
			return fail(err)
		}
		sn.mu.Lock()
		defer sn.took(c.GetSeq())
	}
	defer sn.mu.Unlock()
	sn.last.Store(now.UnixNano())
	ack := &raftmsgpb.SnapshotAck{}
	r := s.Replica(c.GetRangeId())
	if r == nil && isStart && s.hosting.Load() && replicaOf(c.GetRangeDescriptor(), s.d.NodeID) != nil {
		// A range this node is a replica of but does not hold (created by
		// a split this node has not applied, or added while it was
		// away): an empty replica takes the snapshot, unless a tombstone
		// or an overlapping replica forbids it.
		if _, err := s.CreateReplica(ctx, &raftmsgpb.CreateReplicaRequest{Descriptor_: c.GetRangeDescriptor()}); err != nil {
			return fail(err)
		}
		r = s.Replica(c.GetRangeId())
	}
	if r == nil {
		return fail(fmt.Errorf("multiraft: no replica of range %d", c.GetRangeId()))
	}
	if isStart {
		local := r.desc.Load()
		if !snapSpanOK(local, c.GetRangeDescriptor()) {
			return fail(fmt.Errorf("multiraft: snapshot of range %d has span [%q, %q), replica has [%q, %q)", r.rangeID,
				c.GetRangeDescriptor().GetStartKey(), c.GetRangeDescriptor().GetEndKey(), local.GetStartKey(), local.GetEndKey()))
		}
		sn.start, sn.end = clipSpan(nil, nil, c.GetRangeDescriptor())
		in, err := s.d.Engine.IngestRange(ctx, storage.Data, sn.start, sn.end)
		if err != nil {
			return fail(err)
		}
		sn.ingest, sn.digest = in, sha256.New()
		vstart, vend := storage.VersionSpan(sn.start, sn.end)
		if sn.vingest, err = s.d.Engine.IngestRange(ctx, storage.Versions, vstart, vend); err != nil {
			return fail(err)
		}
		ack.Window = snapshotWindow
	}
	if sn.ingest == nil || sn.vingest == nil {
		return fail(fmt.Errorf("multiraft: snapshot %d from node %d was dropped", c.GetSnapshotId(), c.GetFromNode()))
	}
	if len(c.GetKvs()) > 0 {
		kvs := make([]storage.KV, len(c.GetKvs()))
		for i, kv := range c.GetKvs() {
			rec, err := recordOf(kv.GetValue())
			if err != nil {
				return fail(fmt.Errorf("multiraft: snapshot of range %d key %q: %w", c.GetRangeId(), kv.GetKey(), err))
			}
			kvs[i] = storage.KV{Key: kv.GetKey(), Value: rec}
			hashKV(sn.digest, kvs[i].Key, kvs[i].Value)
		}
		if err := sn.ingest.Add(ctx, kvs...); err != nil {
			return fail(err)
		}
	}
	if len(c.GetVersions()) > 0 {
		vstart, vend := storage.VersionSpan(sn.start, sn.end)
		kvs := make([]storage.KV, len(c.GetVersions()))
		for i, e := range c.GetVersions() {
			if err := checkVersionEntry(e.GetKey(), e.GetValue(), vstart, vend); err != nil {
				return fail(fmt.Errorf("multiraft: snapshot of range %d: %w", c.GetRangeId(), err))
			}
			kvs[i] = storage.KV{Key: e.GetKey(), Value: e.GetValue()}
		}
		if err := sn.vingest.Add(ctx, kvs...); err != nil {
			return fail(err)
		}
	}
	for _, e := range c.GetSessions() {
		sn.sessions = append(sn.sessions, sessionRecord{id: e.GetSessionId(), value: e.GetState()})
		sn.sessionBytes += len(e.GetSessionId()) + len(e.GetState())
	}
	if limit := 2*s.cfg.MaxSessionBytes + s.cfg.MaxCommandBytes; sn.sessionBytes > limit {
		return fail(fmt.Errorf("multiraft: snapshot of range %d carries over %d bytes of client sessions", c.GetRangeId(), limit))
	}
	if !c.GetDone() {
		return ack, nil
	}
	st, err := decodeSessionRecords(sn.sessions)
	if err != nil {
		return fail(fmt.Errorf("multiraft: snapshot of range %d: %w", c.GetRangeId(), err))
	}
	sn.sessionTable = st
	s.snaps.Lock()
	delete(s.snaps.in, k)
	s.snaps.Unlock()
	msg, err := decodeMessage(c.GetMessage())
	if err != nil || msg.GetType() != raftpb.MsgSnap {
		return fail(fmt.Errorf("multiraft: snapshot of range %d without a MsgSnap", c.GetRangeId()))
	}
	if c.GetApplied() == nil || !snapSpanOK(r.desc.Load(), c.GetRangeDescriptor()) {
		return fail(fmt.Errorf("multiraft: snapshot of range %d without applied state or with another span", c.GetRangeId()))
	}
	sn.desc, sn.applied, sn.msg = c.GetRangeDescriptor(), c.GetApplied(), msg
	r.in.Lock()
	r.in.snaps = append(r.in.snaps, sn)
	r.in.msgs = append(r.in.msgs, inMsg{msg: msg})
	r.in.Unlock()
	s.enqueue(r.rangeID)
	return ack, nil
}

// recoverSnapshotInstall finishes or rolls back a snapshot install that a
// crash interrupted (see Snapshots above). It runs before the replica's
// raft state is loaded.
func (s *Store) recoverSnapshotInstall(ctx context.Context, rangeID uint64) error {
	eng := s.d.Engine
	mk := storage.SnapshotMarkerKey(rangeID)
	v, ok, err := eng.Get(ctx, storage.Raft, mk)
	if err != nil || !ok {
		return err
	}
	digest, applied, desc, err := decodeMarker(v)
	if err != nil {
		return fmt.Errorf("range %d: %w", rangeID, err)
	}
	snap, err := eng.OpenSnapshot(ctx)
	if err != nil {
		return err
	}
	h := sha256.New()
	start, end := clipSpan(nil, nil, desc)
	err = snap.StreamRange(ctx, storage.Data, start, end, 0, func(kvs []storage.KV) error {
		for _, kv := range kvs {
			hashKV(h, kv.Key, kv.Value)
		}
		return nil
	})
	_ = snap.Release(ctx)
	if err != nil {
		return err
	}
	ops := []storage.Op{storage.Delete(storage.Raft, mk)}
	installed := bytes.Equal(h.Sum(nil), digest)
	sstart, send := storage.StagedSessionSpan(rangeID)
	if !installed {
		ops = append(ops, storage.DeleteRange(storage.Raft, sstart, send))
	} else {
		staged, err := eng.Scan(ctx, storage.Raft, sstart, send, storage.ScanOptions{})
		if err != nil {
			return err
		}
		recs, err := sessionRecordsOf(rangeID, staged)
		if err != nil {
			return err
		}
		if _, err := decodeSessionRecords(recs); err != nil {
			return fmt.Errorf("range %d: staged client sessions: %w", rangeID, err)
		}
		ops = append(ops, replaceSessionsOps(rangeID, recs)...)
		hs := &raftpb.HardState{}
		hv, ok, err := eng.Get(ctx, storage.Raft, storage.HardStateKey(rangeID))
		if err != nil {
			return err
		}
		if ok {
			if err := proto.Unmarshal(hv, hs); err != nil {
				return fmt.Errorf("range %d: decode hard state: %w", rangeID, err)
			}
		}
		// The log restarts at the snapshot: the hard state must not be
		// behind it (a higher term drops the vote, as a message of that
		// term would).
		if hs.GetTerm() < applied.GetTerm() {
			hs.Term, hs.Vote = proto.Uint64(applied.GetTerm()), proto.Uint64(0)
		}
		if hs.GetCommit() < applied.GetIndex() {
			hs.Commit = proto.Uint64(applied.GetIndex())
		}
		hb, err := proto.Marshal(hs)
		if err != nil {
			return err
		}
		tb, err := proto.Marshal(&raftmsgpb.TruncatedState{Index: applied.GetIndex(), Term: applied.GetTerm()})
		if err != nil {
			return err
		}
		ab, err := proto.Marshal(applied)
		if err != nil {
			return err
		}
		db, err := proto.Marshal(desc)
		if err != nil {
			return err
		}
		ops = append(ops, storage.DeleteRange(storage.Raft, storage.LogKey(rangeID, 0), storage.LogKey(rangeID, ^uint64(0))),
			storage.Put(storage.Raft, storage.TruncatedStateKey(rangeID), tb),
			storage.Put(storage.Raft, storage.HardStateKey(rangeID), hb),
			storage.Put(storage.Raft, storage.AppliedStateKey(rangeID), ab),
			storage.Put(storage.Local, storage.ReplicaKey(rangeID), db))
	}
	if err := eng.WriteReserve(ctx, ops, true); err != nil {
		return err
	}
	if installed {
		s.metrics.snapshotsRecov.Add(1)
	}
	s.log.Info("interrupted snapshot install recovered", slog.Uint64("range", rangeID),
		slog.Uint64("index", applied.GetIndex()), slog.Bool("data_installed", installed))
	return nil
}
