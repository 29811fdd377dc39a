package flow

import "testing"

// TestDefAllows: a definition's key prefixes limit names to those under
// one of them; none limits nothing.
func TestDefAllows(t *testing.T) {
	for _, tc := range []struct {
		prefixes []string
		name     string
		want     bool
	}{
		{nil, "anything", true},
		{nil, "", true},
		{[]string{"app/"}, "app/k", true},
		{[]string{"app/"}, "app/", true},
		{[]string{"app/"}, "app", false},
		{[]string{"app/"}, "other/k", false},
		{[]string{"a/", "b/"}, "b/x", true},
		{[]string{"a/", "b/"}, "c/x", false},
	} {
		d := &Def{ID: "d"}
		for _, p := range tc.prefixes {
			d.KeyPrefixes = append(d.KeyPrefixes, []byte(p))
		}
		if got := d.Allows([]byte(tc.name)); got != tc.want {
			t.Errorf("prefixes %q: Allows(%q) = %v; want %v", tc.prefixes, tc.name, got, tc.want)
		}
	}
}
