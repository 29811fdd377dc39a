// Package bustest checks a protocol's authorization table (bus.Rules)
// against the methods registered on a bus: every registered method must
// have an expectation, and every caller role must be allowed or refused
// as expected.
package bustest

import (
	"errors"
	"slices"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// The callers CheckRules tries every method with.
const (
	Node      = "node"       // a node certificate of the bus's own node
	OtherNode = "other-node" // a node certificate of another node
	Client    = "client"     // a client certificate, every key
	Admin     = "admin"      // an admin certificate
	NoRole    = "none"       // a certificate of the CA without a role
)

// Callers returns the roles CheckRules tries, by name, for a bus of node
// self.
func Callers(self uint64) map[string]tlsutil.Role {
	return map[string]tlsutil.Role{
		Node:      tlsutil.NodeRole(self),
		OtherNode: tlsutil.NodeRole(self + 1),
		Client:    tlsutil.ClientRole(),
		Admin:     tlsutil.AdminRole(),
		NoRole:    {},
	}
}

// Want is what a method allows: the callers (names above) permitted with
// Req (nil: the method's empty request), or with ReqFor(caller) when set
// (e.g. a raft message whose sender is the caller).
type Want struct {
	Allow  []string
	Req    proto.Message
	ReqFor func(r tlsutil.Role) proto.Message
}

// CheckRules checks the rules of protocol p on b, whose node id is self:
// the methods registered on p (so a method added without updating want
// fails) must be exactly want's keys, and each caller must be permitted
// exactly when want lists it; a refusal must be a PermissionDenied naming
// the method and the role.
func CheckRules(t testing.TB, b *bus.Bus, p wire.Protocol, self uint64, want map[string]Want) {
	t.Helper()
	registered := b.Methods(p)
	var expected []string
	for m := range want {
		expected = append(expected, m)
	}
	sort.Strings(expected)
	if !slices.Equal(registered, expected) {
		t.Errorf("%s: registered methods %v; the test expects %v (a new method needs a rule and an expectation)", p, registered, expected)
	}
	callers := Callers(self)
	names := make([]string, 0, len(callers))
	for n := range callers {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, m := range registered {
		w, ok := want[m]
		if !ok {
			continue
		}
		for _, name := range names {
			role := callers[name]
			req := w.Req
			if w.ReqFor != nil {
				req = w.ReqFor(role)
			}
			err := b.Permitted(p, m, bus.Peer{Addr: "test", Name: name, Role: role}, req)
			allowed := slices.Contains(w.Allow, name)
			switch {
			case allowed && err != nil:
				t.Errorf("%s/%s by %s: %v; want allowed", p, m, name, err)
			case !allowed && err == nil:
				t.Errorf("%s/%s by %s: allowed; want PermissionDenied", p, m, name)
			case !allowed && !errors.Is(err, bus.ErrPermissionDenied):
				t.Errorf("%s/%s by %s: %v; want PermissionDenied", p, m, name, err)
			}
		}
	}
}

// Denied returns pleiades_bus_denied_total{protocol,method,role} of g (0
// when absent).
func Denied(t testing.TB, g prometheus.Gatherer, protocol, method, role string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"protocol": protocol, "method": method, "role": role}
	for _, mf := range mfs {
		if mf.GetName() != "pleiades_bus_denied_total" {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
