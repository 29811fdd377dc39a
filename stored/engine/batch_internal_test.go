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

// FuzzBatchEncoding builds a batch from arbitrary operations and checks
// the Go encoding against RocksDB's encoder: each input byte picks an
// operation and a family, the next bytes its key and value lengths.
func FuzzBatchEncoding(f *testing.F) {
	o := DefaultOptions()
	o.BlockCacheBytes, o.WriteBufferBytes = 8<<20, 4<<20
	o.MaxKeyBytes, o.MaxValueBytes = 300, 300
	e, err := Open(f.TempDir(), o)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { e.Close() })
	f.Add([]byte{0, 3, 5, 1, 2, 0, 2, 1, 4})
	f.Add([]byte{0xff, 0x80, 0x81, 0x10})
	f.Fuzz(func(t *testing.T, in []byte) {
		b := e.NewBatch()
		native := grocksdb.NewWriteBatch()
		defer native.Destroy()
		for len(in) >= 3 {
			op, cf := in[0]%3, CF(1+int(in[0]/3)%3)
			klen, vlen := 1+int(in[1]), int(in[2])
			in = in[3:]
			key := bytes.Repeat([]byte{byte(klen)}, klen)
			val := bytes.Repeat([]byte{byte(vlen)}, vlen)
			switch op {
			case 0:
				b.Put(cf, key, val)
				native.PutCF(e.cfs[cf], key, val)
			case 1:
				b.Delete(cf, key)
				native.DeleteCF(e.cfs[cf], key)
			case 2:
				end := append(bytes.Clone(key), 0)
				b.DeleteRange(Span{CF: cf, Start: key, End: end})
				native.DeleteRangeCF(e.cfs[cf], key, end)
			}
		}
		if err := b.Err(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b.rep, native.Data()) {
			t.Fatalf("encoding\n%x\nwant RocksDB's\n%x", b.rep, native.Data())
		}
	})
}
