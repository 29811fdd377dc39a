package msgd

import (
	"slices"
	"testing"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// TestPrefixSubjects: the mapping of a certificate's key prefixes to NATS
// subjects (see prefixSubjects), including the prefixes that map to none.
func TestPrefixSubjects(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		want   []string // nil: no subjects
	}{
		{"app/", []string{"app.>"}},
		{"app", []string{"app.>", "app"}},
		{"app/orders/", []string{"app.orders.>"}},
		{"app/orders", []string{"app.orders.>", "app.orders"}},
		{"tenant-7_x/", []string{"tenant-7_x.>"}},
		{"/", nil},
		{"/app/", nil},
		{"app//x/", nil},
		{"app//", nil},
		{"app.v1/", nil},
		{"app/*/", nil},
		{"app/>", nil},
		{"a b/", nil},
		{"app\x00/", nil},
		{"\xff/", nil},
		{"$JS/", nil},
		{"$SYS", nil},
		{"_INBOX/", nil},
		{"_R_/", nil},
		{"pleiades/", nil},
		{"pleiades/events/", nil},
		{"pleiadesx/", []string{"pleiadesx.>"}},
	} {
		got, ok := prefixSubjects([]byte(tt.prefix))
		if ok != (tt.want != nil) || !slices.Equal(got, tt.want) {
			t.Errorf("prefixSubjects(%q) = %q, %v; want %q", tt.prefix, got, ok, tt.want)
		}
	}
}

// TestRolePermissions: what each certificate role may do on NATS.
func TestRolePermissions(t *testing.T) {
	for _, r := range []tlsutil.Role{tlsutil.NodeRole(3), tlsutil.AdminRole()} {
		if p, ok := rolePermissions(r); !ok || p != nil {
			t.Errorf("%v: %+v, %v; want every subject", r, p, ok)
		}
	}
	if _, ok := rolePermissions(tlsutil.Role{}); ok {
		t.Error("a certificate without a role may connect")
	}
	p, ok := rolePermissions(tlsutil.ClientRole())
	if !ok || p.Subscribe != nil || !slices.Equal(p.Publish.Allow, []string{">"}) || !slices.Equal(p.Publish.Deny, []string{"pleiades.events.>"}) {
		t.Errorf("unlimited client: %+v, %v", p, ok)
	}
	p, ok = rolePermissions(tlsutil.ClientRole([]byte("app1/"), []byte("$JS/"), []byte("shared/feed")))
	if !ok {
		t.Fatal("a prefix-limited client may not connect")
	}
	if want := []string{"app1.>", "shared.feed.>", "shared.feed"}; !slices.Equal(p.Publish.Allow, want) || len(p.Publish.Deny) != 0 {
		t.Errorf("publish %+v; want allow %q", p.Publish, want)
	}
	if want := []string{"app1.>", "_INBOX.app1.>", "shared.feed.>", "shared.feed", "_INBOX.shared.feed.>"}; !slices.Equal(p.Subscribe.Allow, want) {
		t.Errorf("subscribe %+v; want allow %q", p.Subscribe, want)
	}
	if p.Response == nil || p.Response.MaxMsgs != 1 {
		t.Errorf("responses %+v; want one reply per request received", p.Response)
	}
	p, ok = rolePermissions(tlsutil.ClientRole([]byte("a.b/")))
	if !ok || len(p.Publish.Allow) != 0 || !slices.Equal(p.Publish.Deny, []string{">"}) || len(p.Subscribe.Allow) != 0 || !slices.Equal(p.Subscribe.Deny, []string{">"}) {
		t.Errorf("client whose prefixes name no subjects: %+v, %v; want every subject denied", p, ok)
	}
}
