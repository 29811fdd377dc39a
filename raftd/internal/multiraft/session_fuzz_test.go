package multiraft

import (
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// FuzzDecodeSessionRecords feeds arbitrary session records (as the
// engine or a snapshot may hold them) to decodeSessionRecords: it never
// panics, and what it accepts encodes back to records it decodes to the
// same table.
func FuzzDecodeSessionRecords(f *testing.F) {
	state := func(first uint64) []byte {
		b, _ := (&clientSession{lastActive: hlc.Timestamp{WallTime: 5}, firstUnacked: first}).stateValue()
		return b
	}
	ans, _ := proto.Marshal(&raftmsgpb.SessionResponse{Timestamp: hlc.Timestamp{WallTime: 9}.Proto(), Failed: true, Current: &kvpb.Value{Value: []byte("v")}})
	f.Add(encodeFuzzRecords([]sessionRecord{{id: make([]byte, 16), value: state(1)}, {id: make([]byte, 16), seq: 1, value: ans}}))
	f.Add(encodeFuzzRecords([]sessionRecord{{id: make([]byte, 16), seq: 3, value: ans}}))
	f.Add(encodeFuzzRecords([]sessionRecord{{id: make([]byte, 5), value: state(1)}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs := decodeFuzzRecords(b)
		tab, err := decodeSessionRecords(recs)
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
		size := 0
		for _, r := range again {
			size += sessionKeyBytes + len(r.value)
		}
		if !reflect.DeepEqual(again, again2) || tab2.bytes != size {
			t.Fatalf("table changed through its records (%d bytes counted, %d in its records)", tab2.bytes, size)
		}
	})
}

// encodeFuzzRecords lays records out for the fuzzer: per record, one
// byte of id length, the id, 8 bytes of seq, 2 bytes of value length,
// the value.
func encodeFuzzRecords(recs []sessionRecord) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, byte(len(r.id)))
		b = append(b, r.id...)
		for i := range 8 {
			b = append(b, byte(r.seq>>(8*(7-i))))
		}
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
		if len(b) < n+10 {
			return out
		}
		r := sessionRecord{id: b[:n]}
		b = b[n:]
		for i := range 8 {
			r.seq = r.seq<<8 | uint64(b[i])
		}
		vn := int(b[8])<<8 | int(b[9])
		b = b[10:]
		if len(b) < vn {
			vn = len(b)
		}
		r.value, b = b[:vn], b[vn:]
		out = append(out, r)
	}
	return out
}
