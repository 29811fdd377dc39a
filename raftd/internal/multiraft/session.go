package multiraft

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
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
// issued. Each range keeps, per session, one record (SessionState: the
// apply timestamp of its last write, the highest first_unacked applied,
// the answers of its applied writes from first_unacked on) in the raft
// column family under storage.SessionKey, written in the round's batch
// with the applied index and the data, once per apply pass in which one
// of the session's writes applied (a session's answers are about as many
// as its client's writes in flight).
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
	// answers are the kept answers, by seq.
	answers []sessionAnswer
	// bytes is the session's share of sessionTable.bytes: its record's
	// size, give or take a few bytes, computed the same way on every
	// replica (limits are decided on it).
	bytes int
}

// sessionAnswer is one kept answer: an encoded SessionResponse, decoded
// only for a repeated write.
type sessionAnswer struct {
	seq uint64
	enc []byte
}

// Size of a session record: key and state, plus each answer's encoding
// and its tag.
const (
	sessionStateBytes = 10 + storage.SessionIDLen + 32
	answerOverhead    = 4
)

// sessionTable is a range's client sessions (Replica.mu.sessions).
type sessionTable struct {
	m     map[sessionID]*clientSession
	bytes int
}

func newSessionTable() *sessionTable { return &sessionTable{m: map[sessionID]*clientSession{}} }

func newClientSession() *clientSession { return &clientSession{bytes: sessionStateBytes} }

// sessionRecord is the record of one session, as stored and as a snapshot
// carries it: an encoded SessionState.
type sessionRecord struct {
	id    []byte
	value []byte
}

// size is an answer's share of its session's bytes.
func (a sessionAnswer) size() int { return len(a.enc) + answerOverhead }

// find returns the index of seq's answer, or where it would go.
func (s *clientSession) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(s.answers, seq, func(a sessionAnswer, seq uint64) int {
		switch {
		case a.seq < seq:
			return -1
		case a.seq > seq:
			return 1
		}
		return 0
	})
}

// keptAbove returns how many answers have seqs at or above fu.
func (s *clientSession) keptAbove(fu uint64) int {
	i, _ := s.find(fu)
	return len(s.answers) - i
}

// appendRecord appends the session's record, an encoded SessionState.
// It writes the wire format by hand: the answers are encoded already.
func (s *clientSession) appendRecord(b []byte) []byte {
	b = appendTimestamp(b, 1, s.lastActive)
	if s.firstUnacked != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, s.firstUnacked)
	}
	for _, a := range s.answers {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, a.enc)
	}
	return b
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
		if t.m[id] != nil {
			return nil, fmt.Errorf("session %x: two records", rec.id)
		}
		st := &raftmsgpb.SessionState{}
		if err := proto.Unmarshal(rec.value, st); err != nil {
			return nil, fmt.Errorf("session %x: %w", rec.id, err)
		}
		ts, err := hlc.FromProto(st.GetLastActive())
		if err != nil {
			return nil, fmt.Errorf("session %x last activity: %w", rec.id, err)
		}
		s := newClientSession()
		s.lastActive, s.firstUnacked = ts, st.GetFirstUnacked()
		for i, a := range st.GetAnswers() {
			if a.GetSeq() < max(s.firstUnacked, 1) || (i > 0 && a.GetSeq() <= st.GetAnswers()[i-1].GetSeq()) {
				return nil, fmt.Errorf("session %x: answer of seq %d out of order (first unacknowledged %d)", rec.id, a.GetSeq(), s.firstUnacked)
			}
			if _, err := hlc.FromProto(a.GetTimestamp()); err != nil {
				return nil, fmt.Errorf("session %x answer %d: %w", rec.id, a.GetSeq(), err)
			}
			enc, err := proto.Marshal(a)
			if err != nil {
				return nil, err
			}
			ans := sessionAnswer{seq: a.GetSeq(), enc: enc}
			s.answers = append(s.answers, ans)
			s.bytes += ans.size()
		}
		t.m[id] = s
		t.bytes += s.bytes
	}
	return t, nil
}

// records returns the table's records by session id.
func (t *sessionTable) records() ([]sessionRecord, error) {
	ids := make([]sessionID, 0, len(t.m))
	for id := range t.m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, compareIDs)
	out := make([]sessionRecord, 0, len(ids))
	for _, id := range ids {
		out = append(out, sessionRecord{id: bytes.Clone(id[:]), value: t.m[id].appendRecord(nil)})
	}
	return out, nil
}

func compareIDs(a, b sessionID) int { return bytes.Compare(a[:], b[:]) }

// answerOf records res as a session answer of seq: the encoding of
// responseOf(seq, res), written by hand (one allocation; it runs for
// every write on every replica).
func answerOf(seq uint64, res *Result) sessionAnswer {
	b := make([]byte, 0, 32+len(res.Current.GetValue()))
	b = appendTimestamp(b, 1, res.Timestamp)
	if !res.Succeeded {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
		if res.FailedOp != 0 {
			b = protowire.AppendTag(b, 3, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(uint32(res.FailedOp)))
		}
	}
	if c := res.Current; c != nil {
		var cur []byte
		if len(c.GetValue()) > 0 {
			cur = protowire.AppendTag(cur, 1, protowire.BytesType)
			cur = protowire.AppendBytes(cur, c.GetValue())
		}
		if ts := c.GetTimestamp(); ts != nil {
			cur = appendTimestamp(cur, 2, hlc.Timestamp{WallTime: ts.GetWallTime(), Logical: ts.GetLogical()})
		}
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendBytes(b, cur)
	}
	var del []byte
	for i, d := range res.Deleted {
		if d {
			del = protowire.AppendVarint(del, uint64(i))
		}
	}
	if len(del) > 0 {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, del)
	}
	if res.Count != 0 {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, res.Count)
	}
	if seq != 0 {
		b = protowire.AppendTag(b, 7, protowire.VarintType)
		b = protowire.AppendVarint(b, seq)
	}
	if res.Count != 0 && len(res.CountFrom) > 0 {
		b = protowire.AppendTag(b, 8, protowire.BytesType)
		b = protowire.AppendBytes(b, res.CountFrom)
	}
	return sessionAnswer{seq: seq, enc: b}
}

// appendTimestamp appends ts as field num, an hlcpb.Timestamp (always
// present, empty when zero, as proto.Marshal writes a set message).
func appendTimestamp(b []byte, num protowire.Number, ts hlc.Timestamp) []byte {
	var t [2 + 2*binary.MaxVarintLen64]byte
	m := t[:0]
	if ts.WallTime != 0 {
		m = protowire.AppendTag(m, 1, protowire.VarintType)
		m = protowire.AppendVarint(m, uint64(ts.WallTime))
	}
	if ts.Logical != 0 {
		m = protowire.AppendTag(m, 2, protowire.VarintType)
		m = protowire.AppendVarint(m, uint64(ts.Logical))
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

// responseOf is the SessionResponse of res, seq's result.
func responseOf(seq uint64, res *Result) *raftmsgpb.SessionResponse {
	a := &raftmsgpb.SessionResponse{Seq: seq, Timestamp: res.Timestamp.Proto(), Failed: !res.Succeeded, Current: res.Current, Count: res.Count}
	if res.Count != 0 && len(res.CountFrom) > 0 {
		a.CountFrom = res.CountFrom
	}
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

// resultOf rebuilds the Result of a command of n ops from its answer.
func resultOf(ans sessionAnswer, n int) (*Result, error) {
	a := &raftmsgpb.SessionResponse{}
	if err := proto.Unmarshal(ans.enc, a); err != nil {
		return nil, fmt.Errorf("session answer %d: %w", ans.seq, err)
	}
	ts, _ := hlc.FromProto(a.GetTimestamp())
	res := &Result{Timestamp: ts, Succeeded: !a.GetFailed(), FailedOp: int(a.GetFailedOp()), Current: a.GetCurrent(),
		Deleted: make([]bool, n), Count: a.GetCount(), CountFrom: a.GetCountFrom()}
	for _, i := range a.GetDeleted() {
		if int(i) < n {
			res.Deleted[i] = true
		}
	}
	return res, nil
}

// Refusals of session commands at apply.
var errSessionStale = bus.WithReason(bus.CodeFailedPrecondition, kvpb.ReasonSessionStale,
	"kv: the write is below its session's first unacknowledged write; not applied")

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
	if p.GetIssuedNanos() <= 0 {
		return bus.Errorf(bus.CodeInvalidArgument, "kv: session without an issue time")
	}
	return nil
}

// sessionOps tracks the session writes of one apply pass.
type sessionOps struct {
	// dirty are the sessions whose record the pass changed (a pass has
	// few: a slice, searched from its end).
	dirty []sessionID
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
		if i, ok := s.find(seq); ok {
			res, err := resultOf(s.answers[i], len(cmd.GetOps()))
			if err != nil {
				return nil, nil, err
			}
			s.lastActive = ts
			a.touchSession(id)
			r.s.metrics.sessionRepeats.Add(1)
			return res, nil, nil
		}
		if seq < s.firstUnacked {
			r.s.metrics.sessionRefusals.Add(1)
			return nil, errSessionStale, nil
		}
	}
	if age := time.Duration(ts.WallTime - sp.GetIssuedNanos()); age > cfg.SessionMaxAge || -age > cfg.SessionMaxAge {
		r.s.metrics.sessionRefusals.Add(1)
		return nil, errTooOld(age, cfg.SessionMaxAge), nil
	}
	fu := sp.GetFirstUnacked()
	if full := r.sessionsFullLocked(id, s, fu); full != "" {
		// Sessions idle for twice the maximum age can go (see above).
		r.forgetIdleSessionsLocked(a, ts, 2*cfg.SessionMaxAge)
		s = t.m[id]
		if full = r.sessionsFullLocked(id, s, fu); full != "" {
			r.s.metrics.sessionRefusals.Add(1)
			return nil, errSessionsFull(r.rangeID, full), nil
		}
	}
	res, err = r.evalLocked(a, cmd, ts)
	if err != nil {
		return nil, nil, err
	}
	if s == nil {
		s = newClientSession()
		t.m[id] = s
		t.bytes += s.bytes
	}
	s.lastActive = ts
	if fu > s.firstUnacked {
		s.firstUnacked = fu
		i, _ := s.find(fu)
		for _, gone := range s.answers[:i] {
			s.bytes -= gone.size()
			t.bytes -= gone.size()
		}
		s.answers = slices.Delete(s.answers, 0, i)
	}
	if seq >= s.firstUnacked {
		ans := answerOf(seq, res)
		i, _ := s.find(seq)
		s.answers = slices.Insert(s.answers, i, ans)
		s.bytes += ans.size()
		t.bytes += ans.size()
	}
	a.touchSession(id)
	return res, nil, nil
}

// sessionsFullLocked says why a write of session id (s, nil when new)
// with first_unacked fu would go beyond the range's limits, or "".
func (r *Replica) sessionsFullLocked(id sessionID, s *clientSession, fu uint64) string {
	t, cfg := r.mu.sessions, r.s.cfg
	switch {
	case s == nil && len(t.m) >= cfg.MaxSessions:
		return fmt.Sprintf("%d client sessions (at most %d), none idle for long enough to forget", len(t.m), cfg.MaxSessions)
	case t.bytes >= cfg.MaxSessionBytes:
		return fmt.Sprintf("client sessions hold %d bytes (at most %d)", t.bytes, cfg.MaxSessionBytes)
	case s != nil && len(s.answers) >= cfg.MaxSessionAnswers && s.keptAbove(max(fu, s.firstUnacked)) >= cfg.MaxSessionAnswers:
		return fmt.Sprintf("session %x keeps %d answers (at most %d; its first unacknowledged write is %d)",
			string(id[:]), s.keptAbove(max(fu, s.firstUnacked)), cfg.MaxSessionAnswers, max(fu, s.firstUnacked))
	}
	return ""
}

// touchSession notes that id's record must be written at the end of the
// pass.
func (a *applier) touchSession(id sessionID) {
	for i := len(a.sessions.dirty) - 1; i >= 0; i-- {
		if a.sessions.dirty[i] == id {
			return
		}
	}
	a.sessions.dirty = append(a.sessions.dirty, id)
}

// flushSessionsLocked writes the records of the sessions the pass
// changed.
func (r *Replica) flushSessionsLocked(a *applier) error {
	t := r.mu.sessions
	for _, id := range a.sessions.dirty {
		s := t.m[id]
		if s == nil {
			continue // forgotten later in the pass
		}
		a.ops = append(a.ops, storage.Put(storage.Raft, storage.SessionKey(r.rangeID, id[:]), s.appendRecord(nil)))
	}
	r.sessionCount.Store(int64(len(t.m)))
	r.sessionBytes.Store(int64(t.bytes))
	return nil
}

// maybeSweepSessionsLocked forgets the sessions idle for SessionIdle when
// ts is SessionMaxAge past the last sweep (rule 1).
func (r *Replica) maybeSweepSessionsLocked(a *applier, ts hlc.Timestamp) {
	last, _ := hlc.FromProto(r.mu.applied.GetSessionsSweptAt())
	if time.Duration(ts.WallTime-last.WallTime) < r.s.cfg.SessionMaxAge {
		return
	}
	r.mu.applied.SessionsSweptAt = ts.Proto()
	r.forgetIdleSessionsLocked(a, ts, r.s.cfg.SessionIdle)
}

// forgetIdleSessionsLocked forgets the sessions idle for longer than idle
// at ts.
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
		a.ops = append(a.ops, storage.Delete(storage.Raft, storage.SessionKey(r.rangeID, id[:])))
		t.bytes -= t.m[id].bytes
		delete(t.m, id)
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
		id, err := storage.ParseSessionKey(rangeID, kv.Key)
		if err != nil {
			return nil, err
		}
		recs = append(recs, sessionRecord{id: id, value: kv.Value})
	}
	return recs, nil
}

// splitCounts returns the session's answers for the right side of a split
// at key, and keeps the left side's in s: a DeleteRange's count stays on
// the side holding the start of the span it covers (count_from) and is 0
// on the other. A retry of the DeleteRange visits both sides, so it counts
// each deleted key once, as the first attempt did; copied whole to both
// sides, the count was added once per side. Answers without a count are
// the same on both sides. changed says whether s's answers changed, and
// grew by how many bytes its size did.
func (s *clientSession) splitCounts(key []byte) (right []sessionAnswer, changed bool, grew int, err error) {
	left, right := s.answers, s.answers
	rightCopied := false
	for i, a := range s.answers {
		count, from, err := answerCount(a.enc)
		if err != nil {
			return nil, false, 0, fmt.Errorf("session answer %d: %w", a.seq, err)
		}
		if count == 0 {
			continue
		}
		zero, err := withoutCount(a)
		if err != nil {
			return nil, false, 0, err
		}
		if bytes.Compare(from, key) >= 0 {
			if !changed {
				left, changed = slices.Clone(s.answers), true
			}
			left[i] = zero
			grew += zero.size() - a.size()
			continue
		}
		if !rightCopied {
			right, rightCopied = slices.Clone(s.answers), true
		}
		right[i] = zero
	}
	s.answers = left
	s.bytes += grew
	return right, changed, grew, nil
}

// answerCount reads an encoded answer's count and count_from.
func answerCount(enc []byte) (count uint64, from []byte, err error) {
	for len(enc) > 0 {
		num, typ, n := protowire.ConsumeTag(enc)
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		enc = enc[n:]
		switch {
		case num == 6 && typ == protowire.VarintType:
			count, n = protowire.ConsumeVarint(enc)
		case num == 8 && typ == protowire.BytesType:
			from, n = protowire.ConsumeBytes(enc)
		default:
			n = protowire.ConsumeFieldValue(num, typ, enc)
		}
		if n < 0 {
			return 0, nil, protowire.ParseError(n)
		}
		enc = enc[n:]
	}
	return count, from, nil
}

// withoutCount returns a with its count (and count_from) removed.
func withoutCount(a sessionAnswer) (sessionAnswer, error) {
	m := &raftmsgpb.SessionResponse{}
	if err := proto.Unmarshal(a.enc, m); err != nil {
		return sessionAnswer{}, fmt.Errorf("session answer %d: %w", a.seq, err)
	}
	m.Count, m.CountFrom = 0, nil
	enc, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return sessionAnswer{}, err
	}
	return sessionAnswer{seq: a.seq, enc: enc}, nil
}
