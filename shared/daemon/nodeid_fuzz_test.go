package daemon

import (
	"strconv"
	"testing"
)

func FuzzParseNodeID(f *testing.F) {
	for _, s := range []string{"1\n", "18446744073709551615", "0", "", " 42 ", "+5", "0x10", "007", "-1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParseNodeID(b)
		if err != nil {
			return
		}
		if id == 0 {
			t.Fatalf("ParseNodeID(%q) = 0 without error", b)
		}
		again, err := ParseNodeID([]byte(strconv.FormatUint(id, 10) + "\n"))
		if err != nil || again != id {
			t.Fatalf("round trip of %d = %d, %v", id, again, err)
		}
	})
}
