package multiraft

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// Client sessions
//
// Every write carries a kvpb.Session (the client's, or one of the raftd
// that received it, see Store.writeHeader): id, seq, first_unacked and
// issued. Each range keeps, per session, a record (SessionState: the
// apply timestamp of its last write, the highest first_unacked applied)
// and the answers (SessionResponse) of its applied writes at or above
// first_unacked, in the raft column family under storage.SessionKey, so
// they are written in the round's batch with the applied index and the
// data: a session's records change only when one of its writes applies.
// Every replica holds the same table in memory (loaded at start, carried
// by snapshots) and decides the same at apply, from the command and the
// table only. A session command applies as follows, at apply timestamp
// T (the command's timestamp raised above the range's last):
//
//  1. a sweep, when T is SessionMaxAge past the last one
//     (AppliedState.sessions_swept_at): sessions idle for SessionIdle
//     are forgotten;
//  2. a seq whose answer the session keeps gets that answer again, and
//     nothing changes but the session's last activity;
//  3. a seq below the session's first_unacked is refused
//     (session_stale): the client no longer waits for it;
//  4. a write issued more than SessionMaxAge before T, or after
//     T+SessionMaxAge, is refused (request_too_old);
//  5. a new session, or a new answer, beyond the range's limits is
//     refused (sessions_full) unless forgetting the sessions idle for
//     2*SessionMaxAge makes room;
//  6. otherwise the command applies; its answer is kept, and the answers
//     below the command's first_unacked are forgotten.
//
// Why forgetting is safe: a write w applied at T_w ≥ issued_w -
// SessionMaxAge (rule 4), and its session was active then. A session is
// forgotten only after 2*SessionMaxAge without activity, so at any later
// T, T - issued_w > SessionMaxAge: every copy of w still to come is
// refused by rule 4 instead of applying as new. The same holds for a
// write never applied whose session moved first_unacked past it (the
// client issued the write before the one that moved it). Apply
// timestamps only grow within a range (a split must give both sides the
// parent's sessions and maximum timestamp).

// sessionID is a client session id (kvpb.Session.id).
type sessionID [storage.SessionIDLen]byte

// clientSession is what a range remembers of one client session.
type clientSession struct {
	lastActive   hlc.Timestamp
	firstUnacked uint64
	answers      map[uint64]*raftmsgpb.SessionResponse
	// bytes is the size of the session's records (keys and values) in
	// the engine, as counted by sessionTable.bytes.
	bytes      int
	stateBytes int
	answerSize map[uint64]int
}

// sessionTable is a range's client sessions (Replica.mu.sessions).
type sessionTable struct {
	m     map[sessionID]*clientSession
	bytes int
}

func newSessionTable() *sessionTable { return &sessionTable{m: map[sessionID]*clientSession{}} }

// sessionKeyBytes is the length of a storage.SessionKey.
var sessionKeyBytes = len(storage.SessionKey(0, make([]byte, storage.SessionIDLen), 0))

// sessionRecord is one record of a session table, as stored and as a
// snapshot carries it: seq 0 holds a SessionState, others a
// SessionResponse.
type sessionRecord struct {
	id    []byte
	seq   uint64
	value []byte
}

// decodeSessionRecords builds a session table from its records, checking
// each one: the decoder of the session state read from the engine and
// received in snapshots.
func decodeSessionRecords(recs []sessionRecord) (*sessionTable, error) {
	t := newSessionTable()
	for _, rec := range recs {
		if len(rec.id) != storage.SessionIDLen {
			return nil, fmt.Errorf("session record: id of %d bytes", len(rec.id))
		}
		id := sessionID(rec.id)
		s := t.m[id]
		if s == nil {
			s = &clientSession{answers: map[uint64]*raftmsgpb.SessionResponse{}, answerSize: map[uint64]int{}}
			t.m[id] = s
		}
		size := sessionKeyBytes + len(rec.value)
		if rec.seq == 0 {
			if s.stateBytes != 0 {
				return nil, fmt.Errorf("session %x: two state records", rec.id)
			}
			st := &raftmsgpb.SessionState{}
			if err := proto.Unmarshal(rec.value, st); err != nil {
				return nil, fmt.Errorf("session %x state: %w", rec.id, err)
			}
			ts, err := hlc.FromProto(st.GetLastActive())
			if err != nil {
				return nil, fmt.Errorf("session %x last activity: %w", rec.id, err)
			}
			s.lastActive, s.firstUnacked, s.stateBytes = ts, st.GetFirstUnacked(), size
		} else {
			if _, dup := s.answers[rec.seq]; dup {
				return nil, fmt.Errorf("session %x: two answers of seq %d", rec.id, rec.seq)
			}
			a := &raftmsgpb.SessionResponse{}
			if err := proto.Unmarshal(rec.value, a); err != nil {
				return nil, fmt.Errorf("session %x answer %d: %w", rec.id, rec.seq, err)
			}
			if _, err := hlc.FromProto(a.GetTimestamp()); err != nil {
				return nil, fmt.Errorf("session %x answer %d: %w", rec.id, rec.seq, err)
			}
			s.answers[rec.seq], s.answerSize[rec.seq] = a, size
		}
		s.bytes += size
		t.bytes += size
	}
	for id, s := range t.m {
		if s.stateBytes == 0 {
			return nil, fmt.Errorf("session %x: answers without a state record", id[:])
		}
		for seq := range s.answers {
			if seq < s.firstUnacked {
				return nil, fmt.Errorf("session %x: answer of seq %d below first unacknowledged %d", id[:], seq, s.firstUnacked)
			}
		}
	}
	return t, nil
}

// records returns the table's records in key order (sessions by id, each
// state first, then answers by seq).
func (t *sessionTable) records() ([]sessionRecord, error) {
	ids := make([]sessionID, 0, len(t.m))
	for id := range t.m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b sessionID) int { return compareIDs(a, b) })
	var out []sessionRecord
	for _, id := range ids {
		s := t.m[id]
		b, err := s.stateValue()
		if err != nil {
			return nil, err
		}
		out = append(out, sessionRecord{id: id[:], value: b})
		seqs := make([]uint64, 0, len(s.answers))
		for seq := range s.answers {
			seqs = append(seqs, seq)
		}
		slices.Sort(seqs)
		for _, seq := range seqs {
			b, err := proto.Marshal(s.answers[seq])
			if err != nil {
				return nil, err
			}
			out = append(out, sessionRecord{id: id[:], seq: seq, value: b})
		}
	}
	return out, nil
}

func compareIDs(a, b sessionID) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}

func (s *clientSession) stateValue() ([]byte, error) {
	return proto.Marshal(&raftmsgpb.SessionState{LastActive: s.lastActive.Proto(), FirstUnacked: s.firstUnacked})
}

// answerOf records res, the outcome of a command of n ops, as a session
// answer.
func answerOf(res *Result) *raftmsgpb.SessionResponse {
	a := &raftmsgpb.SessionResponse{Timestamp: res.Timestamp.Proto(), Failed: !res.Succeeded, Current: res.Current, Count: res.Count}
	if !res.Succeeded {
		a.FailedOp = uint32(res.FailedOp)
	}
	for i, d := range res.Deleted {
		if d {
			a.Deleted = append(a.Deleted, uint32(i))
		}
	}
	return a
}

// result rebuilds the Result of a command of n ops from its answer.
func resultOf(a *raftmsgpb.SessionResponse, n int) *Result {
	ts, _ := hlc.FromProto(a.GetTimestamp())
	res := &Result{Timestamp: ts, Succeeded: !a.GetFailed(), FailedOp: int(a.GetFailedOp()), Current: a.GetCurrent(),
		Deleted: make([]bool, n), Count: a.GetCount()}
	for _, i := range a.GetDeleted() {
		if int(i) < n {
			res.Deleted[i] = true
		}
	}
	return res
}

// Refusals of session commands at apply.
var (
	errSessionStale = bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonSessionStale,
		"kv: the write is below its session's first unacknowledged write; not applied")
)

func errTooOld(age, maxAge time.Duration) error {
	return bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonRequestTooOld,
		"kv: write issued %v before it could apply (at most %v); this attempt was not applied, an earlier one may have been", age, maxAge)
}

func errSessionsFull(rangeID uint64, what string) error {
	return bus.WithReason(bus.CodeResourceExhausted, kvpb.ReasonSessionsFull, "kv: range %d: %s; the write was not applied", rangeID, what)
}

// sessionOf returns the session id of p, checked.
func sessionOf(p *kvpb.Session) (sessionID, error) {
	if len(p.GetId()) != storage.SessionIDLen {
		return sessionID{}, bus.Errorf(bus.CodeInvalidArgument, "kv: session id of %d bytes; want %d", len(p.GetId()), storage.SessionIDLen)
	}
	return sessionID(p.GetId()), nil
}

// checkSession validates a write's session as a request carries it.
func checkSession(p *kvpb.Session) error {
	if _, err := sessionOf(p); err != nil {
		return err
	}
	switch {
	case p.GetSeq() == 0:
		return bus.Errorf(bus.CodeInvalidArgument, "kv: session seq 0 (seqs start at 1)")
	case p.GetFirstUnacked() > p.GetSeq():
		return bus.Errorf(bus.CodeInvalidArgument, "kv: session first_unacked %d above seq %d", p.GetFirstUnacked(), p.GetSeq())
	}
	if ts, err := hlc.FromProto(p.GetIssued()); err != nil || ts.IsZero() {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: session without a valid issue time")
	}
	return nil
}

// sessionOps tracks the session writes of one apply pass.
type sessionOps struct {
	// dirty are the sessions whose state record the pass changed.
	dirty map[sessionID]bool
}

// applySessionLocked applies cmd, a command with a session, at apply
// timestamp ts (rules 2 to 6 above). It returns the command's result,
// or a refusal (nothing changed); err is a storage failure.
func (r *Replica) applySessionLocked(a *applier, cmd *raftmsgpb.Command, ts hlc.Timestamp) (res *Result, refusal, err error) {
	sp := cmd.GetSession()
	id, err := sessionOf(sp)
	if err != nil {
		return nil, err, nil
	}
	t, cfg := r.mu.sessions, r.s.cfg
	s := t.m[id]
	seq := sp.GetSeq()
	if s != nil {
		if ans, ok := s.answers[seq]; ok {
			s.lastActive = ts
			a.touchSession(id)
			r.s.metrics.sessionRepeats.Add(1)
			return resultOf(ans, len(cmd.GetOps())), nil, nil
		}
		if seq < s.firstUnacked {
			r.s.metrics.sessionRefusals.Add(1)
			return nil, errSessionStale, nil
		}
	}
	issued, _ := hlc.FromProto(sp.GetIssued())
	if age := time.Duration(ts.WallTime - issued.WallTime); age > cfg.SessionMaxAge || -age > cfg.SessionMaxAge {
		r.s.metrics.sessionRefusals.Add(1)
		return nil, errTooOld(age, cfg.SessionMaxAge), nil
	}
	if full := r.sessionsFullLocked(id, s, sp.GetFirstUnacked()); full != "" {
		// Sessions idle for twice the maximum age can go (see above).
		r.forgetIdleSessionsLocked(a, ts, 2*cfg.SessionMaxAge)
		s = t.m[id]
		if full = r.sessionsFullLocked(id, s, sp.GetFirstUnacked()); full != "" {
			r.s.metrics.sessionRefusals.Add(1)
			return nil, errSessionsFull(r.rangeID, full), nil
		}
	}
	res, err = r.evalLocked(a, cmd, ts)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		s = &clientSession{answers: map[uint64]*raftmsgpb.SessionResponse{}, answerSize: map[uint64]int{}}
		t.m[id] = s
	}
	s.lastActive = ts
	if fu := sp.GetFirstUnacked(); fu > s.firstUnacked {
		s.firstUnacked = fu
		for q := range s.answers {
			if q < fu {
				a.ops = append(a.ops, storage.Delete(storage.Raft, storage.SessionKey(r.rangeID, id[:], q)))
				t.dropAnswer(s, q)
			}
		}
	}
	if seq >= s.firstUnacked {
		ans := answerOf(res)
		b, err := proto.Marshal(ans)
		if err != nil {
			return nil, nil, err
		}
		a.ops = append(a.ops, storage.Put(storage.Raft, storage.SessionKey(r.rangeID, id[:], seq), b))
		size := sessionKeyBytes + len(b)
		s.answers[seq], s.answerSize[seq] = ans, size
		s.bytes += size
		t.bytes += size
	}
	a.touchSession(id)
	return res, nil, nil
}

// sessionsFullLocked says why a write of session id (s, nil when new)
// with first_unacked fu would go beyond the range's limits, or "".
func (r *Replica) sessionsFullLocked(id sessionID, s *clientSession, fu uint64) string {
	t, cfg := r.mu.sessions, r.s.cfg
	kept := 0
	if s != nil {
		kept = len(s.answers)
		if fu > s.firstUnacked {
			// The write drops the answers below fu.
			kept = 0
			for q := range s.answers {
				if q >= fu {
					kept++
				}
			}
		}
	}
	switch {
	case s == nil && len(t.m) >= cfg.MaxSessions:
		return fmt.Sprintf("%d client sessions (at most %d), none idle for long enough to forget", len(t.m), cfg.MaxSessions)
	case t.bytes >= cfg.MaxSessionBytes:
		return fmt.Sprintf("client sessions hold %d bytes (at most %d)", t.bytes, cfg.MaxSessionBytes)
	case s != nil && kept >= cfg.MaxSessionAnswers:
		return fmt.Sprintf("session %x keeps %d answers (at most %d; its first unacknowledged write is %d)", id[:], kept, cfg.MaxSessionAnswers, max(fu, s.firstUnacked))
	}
	return ""
}

func (t *sessionTable) dropAnswer(s *clientSession, seq uint64) {
	size := s.answerSize[seq]
	delete(s.answers, seq)
	delete(s.answerSize, seq)
	s.bytes -= size
	t.bytes -= size
}

// touchSession notes that id's state record must be written at the end of
// the pass.
func (a *applier) touchSession(id sessionID) {
	if a.sessions.dirty == nil {
		a.sessions.dirty = map[sessionID]bool{}
	}
	a.sessions.dirty[id] = true
}

// flushSessionsLocked writes the state records of the sessions the pass
// changed.
func (r *Replica) flushSessionsLocked(a *applier) error {
	t := r.mu.sessions
	for id := range a.sessions.dirty {
		s := t.m[id]
		if s == nil {
			continue // forgotten later in the pass
		}
		b, err := s.stateValue()
		if err != nil {
			return err
		}
		size := sessionKeyBytes + len(b)
		s.bytes += size - s.stateBytes
		t.bytes += size - s.stateBytes
		s.stateBytes = size
		a.ops = append(a.ops, storage.Put(storage.Raft, storage.SessionKey(r.rangeID, id[:], 0), b))
	}
	r.sessionCount.Store(int64(len(t.m)))
	r.sessionBytes.Store(int64(t.bytes))
	return nil
}

// maybeSweepSessionsLocked forgets the sessions idle for SessionIdle when
// ts is SessionMaxAge past the last sweep (rule 1).
func (r *Replica) maybeSweepSessionsLocked(a *applier, ts hlc.Timestamp) {
	last, _ := hlc.FromProto(r.mu.applied.GetSessionsSweptAt())
	if ts.WallTime-last.WallTime < int64(r.s.cfg.SessionMaxAge) {
		return
	}
	r.mu.applied.SessionsSweptAt = ts.Proto()
	r.forgetIdleSessionsLocked(a, ts, r.s.cfg.SessionIdle)
}

// forgetIdleSessionsLocked forgets the sessions idle for longer than idle
// at ts, in id order.
func (r *Replica) forgetIdleSessionsLocked(a *applier, ts hlc.Timestamp, idle time.Duration) {
	t := r.mu.sessions
	var gone []sessionID
	for id, s := range t.m {
		if time.Duration(ts.WallTime-s.lastActive.WallTime) > idle {
			gone = append(gone, id)
		}
	}
	slices.SortFunc(gone, compareIDs)
	for _, id := range gone {
		s := t.m[id]
		a.ops = append(a.ops, storage.Delete(storage.Raft, storage.SessionKey(r.rangeID, id[:], 0)))
		for seq := range s.answers {
			a.ops = append(a.ops, storage.Delete(storage.Raft, storage.SessionKey(r.rangeID, id[:], seq)))
		}
		t.bytes -= s.bytes
		delete(t.m, id)
		if a.sessions.dirty != nil {
			delete(a.sessions.dirty, id)
		}
	}
	r.s.metrics.sessionsForgotten.Add(uint64(len(gone)))
}

// loadSessions reads the client sessions of a range from the engine.
func loadSessions(s *Store, rangeID uint64) (*sessionTable, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StorageTimeout)
	defer cancel()
	start, end := storage.SessionSpan(rangeID)
	kvs, err := s.d.Engine.Scan(ctx, storage.Raft, start, end, storage.ScanOptions{})
	if err != nil {
		return nil, fmt.Errorf("multiraft: load client sessions of range %d: %w", rangeID, err)
	}
	recs, err := sessionRecordsOf(rangeID, kvs)
	if err != nil {
		return nil, err
	}
	t, err := decodeSessionRecords(recs)
	if err != nil {
		return nil, fmt.Errorf("multiraft: client sessions of range %d: %w", rangeID, err)
	}
	return t, nil
}

// sessionRecordsOf parses engine entries under a range's session keys
// (live or staged); the records alias the entries.
func sessionRecordsOf(rangeID uint64, kvs []storage.KV) ([]sessionRecord, error) {
	recs := make([]sessionRecord, 0, len(kvs))
	for _, kv := range kvs {
		id, seq, err := storage.ParseSessionKey(rangeID, kv.Key)
		if err != nil {
			return nil, err
		}
		recs = append(recs, sessionRecord{id: id, seq: seq, value: kv.Value})
	}
	return recs, nil
}
