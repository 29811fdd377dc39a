package tlsutil

import (
	"bytes"
	"slices"
	"testing"
)

// FuzzParseRole: any input either fails or gives a role whose URI parses
// back to the same role.
func FuzzParseRole(f *testing.F) {
	for _, s := range []string{"pleiades://node/1", "pleiades://client", "pleiades://client?prefix=a%2F&prefix=b",
		"pleiades://admin", "pleiades://node/0", "pleiades://client?prefix=", "https://x", "pleiades://node/1?x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRole(s)
		if err != nil {
			return
		}
		u, err := r.URI()
		if err != nil {
			t.Fatalf("ParseRole(%q) = %v, whose URI fails: %v", s, r, err)
		}
		back, err := ParseRole(u.String())
		if err != nil || back.Kind != r.Kind || back.NodeID != r.NodeID || !slices.EqualFunc(back.Prefixes, r.Prefixes, bytes.Equal) {
			t.Fatalf("ParseRole(%q) = %v; its URI %s parses to %v, %v", s, r, u, back, err)
		}
	})
}
