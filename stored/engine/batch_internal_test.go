package engine

import (
	"bytes"
	"testing"

	"github.com/linxGnu/grocksdb"
)

// TestBatchEncodingMatchesRocksDB checks the Go encoding of a batch
// byte for byte against RocksDB's own WriteBatch for the same operations.
func TestBatchEncodingMatchesRocksDB(t *testing.T) {
	o := DefaultOptions()
	o.BlockCacheBytes, o.WriteBufferBytes = 8<<20, 4<<20
	e, err := Open(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b := e.NewBatch()
	native := grocksdb.NewWriteBatch()
	defer native.Destroy()
	long := bytes.Repeat([]byte("v"), 300) // a two-byte varint length
	for round := 0; round < 2; round++ {
		b.Reset()
		native.Clear()
		b.Put(Local, []byte("id"), []byte("7"))
		native.PutCF(e.cfs[Local], []byte("id"), []byte("7"))
		b.Put(Raft, []byte("log/1"), long)
		native.PutCF(e.cfs[Raft], []byte("log/1"), long)
		b.Put(Data, []byte("empty"), nil)
		native.PutCF(e.cfs[Data], []byte("empty"), nil)
		b.Delete(Data, []byte("gone"))
		native.DeleteCF(e.cfs[Data], []byte("gone"))
		b.DeleteRange(Span{CF: Raft, End: []byte("log/9")})
		native.DeleteRangeCF(e.cfs[Raft], nil, []byte("log/9"))
		b.DeleteRange(Span{CF: Data, Start: []byte("a"), End: []byte("b")})
		native.DeleteRangeCF(e.cfs[Data], []byte("a"), []byte("b"))
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		if got, want := b.rep, native.Data(); !bytes.Equal(got, want) {
			t.Fatalf("round %d: encoding\n%x\nwant RocksDB's\n%x", round, got, want)
		}
	}
}
