package storeclient

import (
	"bytes"
	"testing"

	"github.com/pleiades-db/pleiades/shared/proto/storepb"
)

func TestSplitPacked(t *testing.T) {
	op := func(n int) []byte { return storepb.AppendPut(nil, 3, []byte("k"), make([]byte, n)) }
	size := len(op(10)) // one small operation
	for _, tt := range []struct {
		name  string
		ops   [][]byte
		limit int
		want  []int // operations per part
	}{
		{"fits", [][]byte{op(10), op(10)}, 2 * size, []int{2}},
		{"two parts", [][]byte{op(10), op(10), op(10)}, 2 * size, []int{2, 1}},
		{"one per part", [][]byte{op(10), op(10)}, size, []int{1, 1}},
		{"oversized alone", [][]byte{op(10), op(1000), op(10)}, 2 * size, []int{1, 1, 1}},
	} {
		packed := bytes.Join(tt.ops, nil)
		parts, err := splitPacked(packed, tt.limit)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var got []int
		for _, p := range parts {
			n := 0
			for rest := p; len(rest) > 0; n++ {
				if _, rest, err = storepb.NextOp(rest); err != nil {
					t.Fatalf("%s: part does not end at an operation: %v", tt.name, err)
				}
			}
			got = append(got, n)
		}
		if !bytes.Equal(bytes.Join(parts, nil), packed) || len(got) != len(tt.want) {
			t.Errorf("%s: parts of %v operations; want %v", tt.name, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: parts of %v operations; want %v", tt.name, got, tt.want)
				break
			}
		}
	}
	if _, err := splitPacked([]byte{7, 3, 0}, 10); err == nil {
		t.Error("malformed operations split without an error")
	}
}
