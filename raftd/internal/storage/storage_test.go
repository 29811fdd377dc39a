package storage

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/pleiades-db/pleiades/shared/hlc"
)

func TestMemScan(t *testing.T) {
	ctx := context.Background()
	m := NewMem()
	var ops []Op
	for i := range 10 {
		ops = append(ops, Put(Data, fmt.Appendf(nil, "k%d", i), []byte{byte(i)}))
	}
	if err := m.Write(ctx, ops, false); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		start, end      string
		limit, maxBytes int
		reverse         bool
		want            string
	}{
		{"", "", 0, 0, false, "k0k1k2k3k4k5k6k7k8k9"},
		{"k2", "k5", 0, 0, false, "k2k3k4"},
		{"k2", "k5", 2, 0, false, "k2k3"},
		{"k2", "k5", 0, 0, true, "k4k3k2"},
		{"k2", "", 2, 0, true, "k9k8"},
		{"", "k1", 0, 0, true, "k0"},
		// Each entry is 3 bytes: the page ends with the one reaching 7.
		{"", "", 0, 7, false, "k0k1k2"},
		{"", "", 0, 6, true, "k9k8"},
		{"", "", 0, 1, false, "k0"},
	} {
		var end []byte
		if tt.end != "" {
			end = []byte(tt.end)
		}
		kvs, err := m.Scan(ctx, Data, []byte(tt.start), end, ScanOptions{Limit: tt.limit, MaxBytes: tt.maxBytes, Reverse: tt.reverse})
		if err != nil {
			t.Fatal(err)
		}
		var got []byte
		for _, kv := range kvs {
			got = append(got, kv.Key...)
		}
		if string(got) != tt.want {
			t.Errorf("Scan(%q, %q, %d, %v) = %q; want %q", tt.start, tt.end, tt.limit, tt.reverse, got, tt.want)
		}
	}
	if err := m.Write(ctx, []Op{DeleteRange(Data, []byte("k3"), []byte("k8"))}, false); err != nil {
		t.Fatal(err)
	}
	kvs, _ := m.Scan(ctx, Data, nil, nil, ScanOptions{})
	if len(kvs) != 5 {
		t.Errorf("after delete range: %d keys; want 5", len(kvs))
	}
	if err := m.Write(ctx, []Op{{Kind: OpPut, CF: 9, Key: []byte("x")}}, false); err == nil {
		t.Error("write to unknown family succeeded")
	}
}

func TestMemCrashKeepsOnlySynced(t *testing.T) {
	ctx := context.Background()
	m := NewMem()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(m.Write(ctx, []Op{Put(Raft, []byte("a"), []byte("1"))}, false))
	must(m.Write(ctx, []Op{Put(Raft, []byte("b"), []byte("2"))}, true))
	must(m.Write(ctx, []Op{Put(Raft, []byte("c"), []byte("3")), Delete(Raft, []byte("a"))}, false))
	m.Crash()
	for _, tt := range []struct {
		key   string
		found bool
	}{{"a", true}, {"b", true}, {"c", false}} {
		_, ok, err := m.Get(ctx, Raft, []byte(tt.key))
		must(err)
		if ok != tt.found {
			t.Errorf("after crash Get(%q) found=%v; want %v", tt.key, ok, tt.found)
		}
	}
}

func TestKeys(t *testing.T) {
	k := LogKey(7, 42)
	if i, err := LogIndex(7, k); err != nil || i != 42 {
		t.Errorf("LogIndex = %d, %v; want 42", i, err)
	}
	if _, err := LogIndex(8, k); err == nil {
		t.Error("LogIndex of another range's key succeeded")
	}
	s, e := RangeRaftSpan(7)
	for _, key := range [][]byte{HardStateKey(7), TruncatedStateKey(7), AppliedStateKey(7), k} {
		if bytes.Compare(key, s) < 0 || bytes.Compare(key, e) >= 0 {
			t.Errorf("key %x outside the range span [%x, %x)", key, s, e)
		}
	}
	if bytes.Compare(LogKey(7, 255), LogKey(7, 256)) >= 0 {
		t.Error("log keys do not sort by index")
	}
}

func TestEnvelope(t *testing.T) {
	ts := hlc.Timestamp{WallTime: 1700000000000000000, Logical: 3}
	got, v, err := DecodeValue(EncodeValue(ts, []byte("hello")))
	if err != nil || got != ts || string(v) != "hello" {
		t.Errorf("round trip = %v %q %v", got, v, err)
	}
	for _, bad := range [][]byte{nil, {1, 2}, append([]byte{2}, make([]byte, 12)...)} {
		if _, _, err := DecodeValue(bad); err == nil {
			t.Errorf("DecodeValue(%x) succeeded", bad)
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(EncodeValue(hlc.Timestamp{WallTime: 5, Logical: 1}, []byte("v")))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, v, err := DecodeValue(b)
		if err != nil {
			return
		}
		m, v2, _, err := DecodeRecord(b)
		if err != nil || m.Mod != ts || !bytes.Equal(v, v2) {
			t.Fatalf("DecodeValue(%x) = %v, %q; DecodeRecord = %+v, %q, %v", b, ts, v, m, v2, err)
		}
		again := EncodeValue(ts, v)
		if b[0] != envelopeVersion {
			again = EncodeRecord(m, v)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encode %x != %x", again, b)
		}
	})
}

func TestSessionKeys(t *testing.T) {
	id := bytes.Repeat([]byte{7}, SessionIDLen)
	for _, k := range [][]byte{SessionKey(3, id), StagedSessionKey(3, id)} {
		gotID, err := ParseSessionKey(3, k)
		if err != nil || !bytes.Equal(gotID, id) {
			t.Errorf("ParseSessionKey(%x) = %x, %v; want %x", k, gotID, err, id)
		}
		if _, err := ParseSessionKey(4, k); err == nil {
			t.Errorf("ParseSessionKey of range 4 accepted %x, a key of range 3", k)
		}
		if _, err := ParseSessionKey(3, k[:len(k)-1]); err == nil {
			t.Errorf("ParseSessionKey accepted a truncated key")
		}
	}
	if _, err := ParseSessionKey(3, AppliedStateKey(3)); err == nil {
		t.Error("ParseSessionKey accepted an applied state key")
	}
	// A range's session records lie in their span, inside the range's
	// raft span, apart from the staged ones.
	start, end := SessionSpan(3)
	rs, re := RangeRaftSpan(3)
	a := SessionKey(3, id)
	if !(bytes.Compare(start, a) <= 0 && bytes.Compare(a, end) < 0 && bytes.Compare(rs, start) <= 0 && bytes.Compare(end, re) <= 0) {
		t.Error("session keys out of their spans")
	}
	if s2, _ := StagedSessionSpan(3); bytes.Compare(s2, end) < 0 {
		t.Error("staged session span overlaps the live one")
	}
}
