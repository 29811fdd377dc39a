package storepb

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestPackedRoundTrip(t *testing.T) {
	entries := [][2][]byte{
		{[]byte("a"), []byte("1")},
		{[]byte("empty value"), nil},
		{bytes.Repeat([]byte("k"), 200), bytes.Repeat([]byte("v"), 70000)}, // multi-byte lengths
	}
	var b []byte
	for _, e := range entries {
		b = AppendPacked(b, e[0], e[1])
	}
	if n, err := CountPacked(b); err != nil || n != len(entries) {
		t.Fatalf("CountPacked = %d, %v; want %d", n, err, len(entries))
	}
	rest := b
	for i, e := range entries {
		k, v, r, err := NextPacked(rest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, e[0]) || !bytes.Equal(v, e[1]) || cap(k) != len(k) || cap(v) != len(v) {
			t.Errorf("entry %d = %q, %q (caps %d, %d)", i, k, v, cap(k), cap(v))
		}
		rest = r
	}
	if len(rest) != 0 {
		t.Errorf("%d bytes left", len(rest))
	}
}

func TestPackedMalformed(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"truncated key", []byte{5, 'a', 'b'}},
		{"missing value", []byte{1, 'a'}},
		{"truncated value", []byte{1, 'a', 3, 'x'}},
		{"unterminated varint", []byte{0x80}},
		{"overlong length", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"varint over 64 bits", []byte(strings.Repeat("\xff", 11))},
	} {
		if _, err := CountPacked(tt.in); !errors.Is(err, ErrPacked) {
			t.Errorf("%s: CountPacked(%x) = %v; want ErrPacked", tt.name, tt.in, err)
		}
	}
}

// FuzzNextPacked decodes arbitrary bytes: it must never panic, and the
// entries of a list it accepts must survive re-encoding.
func FuzzNextPacked(f *testing.F) {
	f.Add(AppendPacked(AppendPacked(nil, []byte("key"), []byte("value")), nil, nil))
	f.Add([]byte{0x80, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := CountPacked(b)
		if err != nil {
			return
		}
		decode := func(b []byte) [][]byte {
			var out [][]byte
			for len(b) > 0 {
				k, v, r, err := NextPacked(b)
				if err != nil {
					t.Fatalf("NextPacked failed after CountPacked accepted: %v", err)
				}
				out, b = append(out, k, v), r
			}
			return out
		}
		first := decode(b)
		if len(first) != 2*n {
			t.Fatalf("CountPacked = %d; decoded %d entries", n, len(first)/2)
		}
		var again []byte
		for i := 0; i < len(first); i += 2 {
			again = AppendPacked(again, first[i], first[i+1])
		}
		// Input varints may be non-minimal, so re-encoding never grows.
		if len(again) > len(b) {
			t.Fatalf("re-encoding grew: %d > %d bytes", len(again), len(b))
		}
		second := decode(again)
		for i := range first {
			if !bytes.Equal(first[i], second[i]) {
				t.Fatalf("field %d = %q after re-encoding; want %q", i, second[i], first[i])
			}
		}
	})
}

func TestPackedOps(t *testing.T) {
	var b []byte
	b = AppendPut(b, ColumnFamily_COLUMN_FAMILY_RAFT, []byte("k"), []byte("v"))
	b = AppendDelete(b, ColumnFamily_COLUMN_FAMILY_LOCAL, []byte("gone"))
	b = AppendDeleteRange(b, ColumnFamily_COLUMN_FAMILY_DATA, nil, []byte("z"))
	b = AppendPut(b, ColumnFamily(-1), nil, nil) // decoded; judged by the server
	want := []PackedOp{
		{OpPut, ColumnFamily_COLUMN_FAMILY_RAFT, []byte("k"), []byte("v")},
		{OpDelete, ColumnFamily_COLUMN_FAMILY_LOCAL, []byte("gone"), nil},
		{OpDeleteRange, ColumnFamily_COLUMN_FAMILY_DATA, []byte{}, []byte("z")},
		{OpPut, ColumnFamily(-1), []byte{}, []byte{}},
	}
	for i, w := range want {
		op, rest, err := NextOp(b)
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if op.Kind != w.Kind || op.CF != w.CF || !bytes.Equal(op.Key, w.Key) || !bytes.Equal(op.Value, w.Value) {
			t.Errorf("op %d = %+v; want %+v", i, op, w)
		}
		b = rest
	}
	if len(b) != 0 {
		t.Errorf("%d bytes left", len(b))
	}
	for _, bad := range [][]byte{{}, {9, 1, 0}, {1, 1, 1}, {2, 0x80}, {3, 1, 0, 4, 'a'}, append([]byte{1}, bytes.Repeat([]byte{0xff}, 5)...)} {
		if _, _, err := NextOp(bad); !errors.Is(err, ErrPacked) {
			t.Errorf("NextOp(%x) = %v; want ErrPacked", bad, err)
		}
	}
}

// FuzzNextOp decodes arbitrary packed operations: never a panic, and
// accepted operations re-encode to the same bytes when their varints are
// minimal.
func FuzzNextOp(f *testing.F) {
	f.Add(AppendDeleteRange(AppendDelete(AppendPut(nil, 2, []byte("k"), []byte("v")), 1, []byte("d")), 3, []byte("a"), []byte("b")))
	f.Add([]byte{1, 0x80, 0x80, 0x80, 0x80, 0x10})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			op, rest, err := NextOp(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatalf("NextOp consumed nothing of %x", b)
			}
			var again []byte
			switch op.Kind {
			case OpPut:
				again = AppendPut(nil, op.CF, op.Key, op.Value)
			case OpDelete:
				again = AppendDelete(nil, op.CF, op.Key)
			case OpDeleteRange:
				again = AppendDeleteRange(nil, op.CF, op.Key, op.Value)
			default:
				t.Fatalf("accepted kind %d", op.Kind)
			}
			if consumed := b[:len(b)-len(rest)]; len(again) > len(consumed) {
				t.Fatalf("re-encoding %x is longer than the input %x", again, consumed)
			}
			b = rest
		}
	})
}
