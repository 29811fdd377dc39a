package clockd

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func TestFileBoundRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f := NewFileBound(dir)
	if b, err := f.LoadBound(t.Context()); err != nil || b != 0 {
		t.Fatalf("empty dir: %d, %v", b, err)
	}
	for _, v := range []int64{1, 1_700_000_000_123_456_789, 5} {
		if err := f.SaveBound(t.Context(), v); err != nil {
			t.Fatal(err)
		}
		if b, err := f.LoadBound(t.Context()); err != nil || b != v {
			t.Fatalf("load = %d, %v; want %d", b, err, v)
		}
	}
	if err := f.SaveBound(t.Context(), -1); err == nil {
		t.Fatal("negative bound saved")
	}
	if err := os.WriteFile(filepath.Join(dir, boundFileName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.LoadBound(t.Context()); err == nil {
		t.Fatal("corrupt bound file accepted")
	}
}

func FuzzDecodeBound(f *testing.F) {
	f.Add(binary.BigEndian.AppendUint64(nil, 1_700_000_000_000_000_000))
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeBound(b)
		if err != nil {
			return
		}
		if v < 0 || len(b) != 8 || binary.BigEndian.Uint64(b) != uint64(v) {
			t.Fatalf("decodeBound(%x) = %d", b, v)
		}
	})
}
