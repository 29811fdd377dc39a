package multiraft

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// FuzzDecodeMarker: decoding never panics, and what decodes re-encodes to
// a marker that decodes to the same values.
func FuzzDecodeMarker(f *testing.F) {
	good, err := encodeMarker(make([]byte, sha256.Size), &raftmsgpb.AppliedState{Index: 162, Term: 6},
		&kvpb.RangeDescriptor{RangeId: 2, StartKey: []byte{1}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:sha256.Size])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, a, desc, err := decodeMarker(b)
		if err != nil {
			return
		}
		again, err := encodeMarker(d, a, desc)
		if err != nil {
			t.Fatal(err)
		}
		d2, a2, desc2, err := decodeMarker(again)
		if err != nil {
			t.Fatalf("re-encoded marker does not decode: %v", err)
		}
		if !bytes.Equal(d, d2) || !proto.Equal(a, a2) || !proto.Equal(desc, desc2) {
			t.Fatal("marker changed through encode/decode")
		}
	})
}
