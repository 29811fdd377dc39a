package multiraft

import (
	"bytes"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// FuzzDecodeSessionRecords feeds arbitrary session records (as the
// engine or a snapshot may hold them) to decodeSessionRecords: it never
// panics, and what it accepts encodes back to records that decode to the
// same table.
func FuzzDecodeSessionRecords(f *testing.F) {
	for _, recs := range fuzzSeeds() {
		f.Add(encodeFuzzRecords(recs))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := decodeSessionRecords(decodeFuzzRecords(b))
		if err != nil {
			return
		}
		again, err := tab.records()
		if err != nil {
			t.Fatal(err)
		}
		tab2, err := decodeSessionRecords(again)
		if err != nil {
			t.Fatalf("records of an accepted table do not decode: %v", err)
		}
		again2, err := tab2.records()
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, again2) || tab.bytes != tab2.bytes || len(tab.m) != len(tab2.m) {
			t.Fatalf("table changed through its records: %d sessions of %d bytes, then %d of %d", len(tab.m), tab.bytes, len(tab2.m), tab2.bytes)
		}
	})
}

// fuzzSeeds are the seed corpus (testdata/fuzz/FuzzDecodeSessionRecords).
func fuzzSeeds() map[string][]sessionRecord {
	state := func(first uint64, seqs ...uint64) []byte {
		st := &raftmsgpb.SessionState{LastActive: hlc.Timestamp{WallTime: 5}.Proto(), FirstUnacked: first}
		for _, q := range seqs {
			st.Answers = append(st.Answers, &raftmsgpb.SessionResponse{Seq: q, Timestamp: hlc.Timestamp{WallTime: 9}.Proto(), Failed: true,
				Current: &kvpb.Value{Value: []byte("v")}, Deleted: []uint32{0, 2}, Count: 3})
		}
		b, _ := proto.Marshal(st)
		return b
	}
	id, id2 := []byte("0123456789abcdef"), []byte("fedcba9876543210")
	return map[string][]sessionRecord{
		"seed-session":       {{id: id, value: state(1, 1, 2)}},
		"seed-two-sessions":  {{id: id, value: state(1)}, {id: id2, value: state(7, 7, 9)}},
		"seed-same-id-twice": {{id: id, value: state(1)}, {id: id, value: state(2)}},
		"seed-short-id":      {{id: id[:5], value: state(1)}},
		"seed-below-first":   {{id: id, value: state(4, 2)}},
		"seed-out-of-order":  {{id: id, value: state(1, 3, 2)}},
		"seed-garbage-value": {{id: id, value: []byte{0xff, 0xff, 0xff}}},
	}
}

// encodeFuzzRecords lays records out for the fuzzer: per record, one
// byte of id length, the id, 2 bytes of value length, the value.
func encodeFuzzRecords(recs []sessionRecord) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, byte(len(r.id)))
		b = append(b, r.id...)
		b = append(b, byte(len(r.value)>>8), byte(len(r.value)))
		b = append(b, r.value...)
	}
	return b
}

func decodeFuzzRecords(b []byte) []sessionRecord {
	var out []sessionRecord
	for len(b) > 0 {
		n := int(b[0])
		b = b[1:]
		if len(b) < n+2 {
			return out
		}
		r := sessionRecord{id: bytes.Clone(b[:n])}
		vn := int(b[n])<<8 | int(b[n+1])
		b = b[n+2:]
		vn = min(vn, len(b))
		r.value, b = b[:vn], b[vn:]
		out = append(out, r)
	}
	return out
}

// TestSessionRecordEncoding: the hand-written record of a session is the
// protobuf encoding of its SessionState.
func TestSessionRecordEncoding(t *testing.T) {
	s := newClientSession()
	s.lastActive, s.firstUnacked = hlc.Timestamp{WallTime: 1 << 40, Logical: 3}, 4
	want := &raftmsgpb.SessionState{LastActive: s.lastActive.Proto(), FirstUnacked: 4}
	for _, res := range []*Result{
		{Timestamp: hlc.Timestamp{WallTime: 7}, Succeeded: true, Deleted: []bool{false, true}},
		{Timestamp: hlc.Timestamp{WallTime: 8, Logical: 1}, FailedOp: 1, Current: &kvpb.Value{Value: []byte("v"), Timestamp: hlc.Timestamp{WallTime: 2}.Proto()}},
		{Timestamp: hlc.Timestamp{WallTime: 10}, Current: &kvpb.Value{Timestamp: hlc.Timestamp{WallTime: 3, Logical: -1}.Proto()}},
		{Timestamp: hlc.Timestamp{}, Succeeded: true},
		{Timestamp: hlc.Timestamp{WallTime: 9}, Succeeded: true, Count: 12},
		{Timestamp: hlc.Timestamp{WallTime: 11}, Succeeded: true, Count: 5, CountFrom: []byte("k10")},
	} {
		seq := uint64(4 + len(s.answers))
		a := answerOf(seq, res)
		if want, err := proto.Marshal(responseOf(seq, res)); err != nil || !bytes.Equal(a.enc, want) {
			t.Errorf("answer %d encodes as %x; proto.Marshal gives %x (%v)", seq, a.enc, want, err)
		}
		s.answers = append(s.answers, a)
		want.Answers = append(want.Answers, responseOf(seq, res))
		back, err := resultOf(a, 2)
		if err != nil {
			t.Fatal(err)
		}
		if back.Timestamp != res.Timestamp || back.Succeeded != res.Succeeded || back.Count != res.Count || !bytes.Equal(back.CountFrom, res.CountFrom) || back.FailedOp != res.FailedOp ||
			!proto.Equal(back.Current, res.Current) || (len(res.Deleted) == 2 && back.Deleted[1] != res.Deleted[1]) {
			t.Errorf("answer %d decodes to %+v; want %+v", seq, back, res)
		}
	}
	got := &raftmsgpb.SessionState{}
	if err := proto.Unmarshal(s.appendRecord(nil), got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("record decodes to %v; want %v", got, want)
	}
	wantBytes, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if rec := s.appendRecord(nil); !bytes.Equal(rec, wantBytes) {
		t.Errorf("record %x; proto.Marshal gives %x", rec, wantBytes)
	}
}
