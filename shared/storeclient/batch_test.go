package storeclient

import (
	"bytes"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

func TestBatchPacksOpsInOrderAndResets(t *testing.T) {
	var b Batch
	key := []byte("a")
	for round := 0; round < 3; round++ {
		b.Put(Raft, key, []byte("1")).
			Delete(Local, []byte("b")).
			DeleteRange(Data, []byte("c"), []byte("d"))
		key[0] = 'x' // the batch copied the key
		for i := 0; i < 40; i++ {
			b.Put(Data, []byte{byte(i)}, []byte("v"))
		}
		key[0] = 'a'
		if b.Len() != 43 {
			t.Fatalf("round %d: Len() = %d; want 43", round, b.Len())
		}
		want := []storepb.PackedOp{
			{Kind: storepb.OpPut, CF: Raft, Key: []byte("a"), Value: []byte("1")},
			{Kind: storepb.OpDelete, CF: Local, Key: []byte("b")},
			{Kind: storepb.OpDeleteRange, CF: Data, Key: []byte("c"), Value: []byte("d")},
		}
		for i := 0; i < 40; i++ {
			want = append(want, storepb.PackedOp{Kind: storepb.OpPut, CF: Data, Key: []byte{byte(i)}, Value: []byte("v")})
		}
		rest := b.packed
		for i, w := range want {
			op, r, err := storepb.NextOp(rest)
			if err != nil {
				t.Fatalf("round %d op %d: %v", round, i, err)
			}
			if op.Kind != w.Kind || op.CF != w.CF || !bytes.Equal(op.Key, w.Key) || !bytes.Equal(op.Value, w.Value) {
				t.Fatalf("round %d op %d = %+v; want %+v", round, i, op, w)
			}
			rest = r
		}
		if len(rest) != 0 {
			t.Fatalf("round %d: %d bytes after the last op", round, len(rest))
		}
		if got, want := b.Bytes(), 2+1+2+40*2; got != want {
			t.Errorf("Bytes() = %d; want %d", got, want)
		}
		b.Reset()
		if b.Len() != 0 || b.Bytes() != 0 || len(b.packed) != 0 {
			t.Fatalf("after Reset: Len %d Bytes %d packed %d; want 0", b.Len(), b.Bytes(), len(b.packed))
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
