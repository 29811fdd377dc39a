package storeclient

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

func TestBatchBuildsOpsInOrderAndResets(t *testing.T) {
	var b Batch
	for round := 0; round < 3; round++ {
		b.Put(Raft, []byte("a"), []byte("1")).
			Delete(Local, []byte("b")).
			DeleteRange(Data, []byte("c"), []byte("d"))
		for i := 0; i < 40; i++ { // grow the pools past their first size
			b.Put(Data, []byte{byte(i)}, []byte("v"))
		}
		if b.Len() != 43 {
			t.Fatalf("round %d: Len() = %d; want 43", round, b.Len())
		}
		want := []*storepb.Op{
			{Op: &storepb.Op_Put{Put: &storepb.Put{Cf: Raft, Key: []byte("a"), Value: []byte("1")}}},
			{Op: &storepb.Op_Delete{Delete: &storepb.Delete{Cf: Local, Key: []byte("b")}}},
			{Op: &storepb.Op_DeleteRange{DeleteRange: &storepb.DeleteRange{Span: &storepb.Span{Cf: Data, Start: []byte("c"), End: []byte("d")}}}},
		}
		for i := 0; i < 40; i++ {
			want = append(want, &storepb.Op{Op: &storepb.Op_Put{Put: &storepb.Put{Cf: Data, Key: []byte{byte(i)}, Value: []byte("v")}}})
		}
		got := &storepb.WriteRequest{Ops: b.ops}
		// Round trip through the wire encoding, as Write sends it.
		raw, err := proto.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var dec storepb.WriteRequest
		if err := proto.Unmarshal(raw, &dec); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&dec, &storepb.WriteRequest{Ops: want}) {
			t.Fatalf("round %d: batch = %v; want %v", round, &dec, want)
		}
		if got, want := b.Bytes(), 2+1+2+40*2; got != want {
			t.Errorf("Bytes() = %d; want %d", got, want)
		}
		b.Reset()
		if b.Len() != 0 || b.Bytes() != 0 {
			t.Fatalf("after Reset: Len %d Bytes %d; want 0", b.Len(), b.Bytes())
		}
	}
}

func BenchmarkBatchReuse(b *testing.B) {
	var wb Batch
	k, v := make([]byte, 16), make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		for i := 0; i < 100; i++ {
			wb.Put(Data, k, v)
		}
		wb.Reset()
	}
}
