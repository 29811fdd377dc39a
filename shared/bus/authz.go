package bus

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Roles is a set of certificate role kinds (see tlsutil.Role).
type Roles uint8

// The role sets a Rule names; combine them with |.
const (
	Nodes   Roles = 1 << tlsutil.KindNode
	Clients Roles = 1 << tlsutil.KindClient
	Admins  Roles = 1 << tlsutil.KindAdmin
)

// Has reports whether the set holds kind k.
func (r Roles) Has(k tlsutil.Kind) bool { return k < 8 && r&(1<<k) != 0 }

// Rule says who may call one method: the role kinds, and for those an
// optional Check of the caller and the decoded request (a client's key
// prefixes, a raft message's sender). Check returns nil to allow, or the
// reason for refusing (the bus wraps it in a PermissionDenied error).
type Rule struct {
	Roles Roles
	Check func(peer Peer, req proto.Message) error
}

// Rules is the authorization table of one protocol: method → Rule. A
// daemon declares it next to the registration of the protocol's handlers
// and installs it with Bus.Authorize.
type Rules map[string]Rule

// defaultRule applies to the methods of a protocol without Rules (test
// doubles; every daemon installs its tables): node and admin certificates.
var defaultRule = Rule{Roles: Nodes | Admins}

// Authorize installs the rules of protocol p. A method of p without a
// rule is refused to everyone. Without Authorize, a protocol's methods
// are open to node and admin certificates only. Call it before Start, once per
// protocol.
func (b *Bus) Authorize(p wire.Protocol, rules Rules) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		panic(fmt.Sprintf("bus: Authorize %s after Start", p))
	}
	if b.rules[p] != nil {
		panic(fmt.Sprintf("bus: Authorize %s twice", p))
	}
	b.rules[p] = rules
}

// Methods returns the methods registered on protocol p, sorted, with
// "datagram" when p has a datagram handler (for the tests that check
// every one has a rule).
func (b *Bus) Methods(p wire.Protocol) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k := range b.handlers {
		if k.p == p {
			out = append(out, k.method)
		}
	}
	if b.dgram[p] != nil {
		out = append(out, DatagramMethod)
	}
	slices.Sort(out)
	return out
}

// DatagramMethod is the name a protocol's rules give its datagrams.
const DatagramMethod = "datagram"

// Rules returns the rules installed for protocol p (nil: none).
func (b *Bus) Rules(p wire.Protocol) Rules {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rules[p]
}

// permit decides whether peer may call method on p with req (nil for a
// datagram); a refusal is counted and logged.
func (b *Bus) permit(p wire.Protocol, method string, peer Peer, req proto.Message) error {
	if why := b.decide(p, method, peer, req); why != "" {
		return b.deny(p, method, peer, why)
	}
	return nil
}

// decide returns why peer may not call method on p with req, "" if it may.
func (b *Bus) decide(p wire.Protocol, method string, peer Peer, req proto.Message) string {
	rule := defaultRule
	if rules := b.rules[p]; rules != nil {
		r, ok := rules[method]
		if !ok {
			return "the method has no authorization rule"
		}
		rule = r
	}
	if !rule.Roles.Has(peer.Role.Kind) {
		return "its role may not call it"
	}
	if rule.Check != nil {
		if err := rule.Check(peer, req); err != nil {
			return err.Error()
		}
	}
	return ""
}

// Permitted decides, as the handler of method on p would, whether peer
// may call it with req (nil: the method's empty request), without
// counting or logging: the per-protocol tests check every registered
// method's rule with it. It returns nil or the PermissionDenied error.
func (b *Bus) Permitted(p wire.Protocol, method string, peer Peer, req proto.Message) error {
	if req == nil {
		b.mu.Lock()
		h := b.handlers[hkey{p, method}]
		b.mu.Unlock()
		if h != nil {
			req = h.newReq()
		}
	}
	if why := b.decide(p, method, peer, req); why != "" {
		return PermissionDenied(p, method, peer.Role, why)
	}
	return nil
}

// authorize is permit for the peer of a handler's ctx.
func (b *Bus) authorize(ctx context.Context, p wire.Protocol, method string, req proto.Message) error {
	peer, _ := PeerFromContext(ctx)
	return b.permit(p, method, peer, req)
}

// PermissionDenied returns the error of a refused call: CodePermissionDenied
// with the method and the caller's role in its message.
func PermissionDenied(p wire.Protocol, method string, role tlsutil.Role, why string) error {
	return &Error{Code: CodePermissionDenied, Reason: ReasonPermissionDenied,
		Message: fmt.Sprintf("%s/%s refused to role %s: %s", p, method, role, why)}
}

// ReasonPermissionDenied comes with CodePermissionDenied.
const ReasonPermissionDenied = "permission_denied"

func (b *Bus) deny(p wire.Protocol, method string, peer Peer, why string) error {
	b.m.denied.WithLabelValues(p.String(), method, peer.Role.Kind.String()).Inc()
	b.denyLog.log(b.log, p, method, peer, why)
	return PermissionDenied(p, method, peer.Role, why)
}

// denyLogEvery is the least time between two logs of refused calls; the
// refusals in between are counted in the next log line.
const denyLogEvery = 5 * time.Second

// denyLogger rate-limits the logs of refused calls: a peer calling in a
// loop must not flood the log.
type denyLogger struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (d *denyLogger) log(l *slog.Logger, p wire.Protocol, method string, peer Peer, why string) {
	d.mu.Lock()
	now := time.Now()
	if !d.last.IsZero() && now.Sub(d.last) < denyLogEvery {
		d.suppressed++
		d.mu.Unlock()
		return
	}
	d.last = now
	n := d.suppressed
	d.suppressed = 0
	d.mu.Unlock()
	l.Warn("bus: call refused", slog.String("protocol", p.String()), slog.String("method", method),
		slog.String("role", peer.Role.String()), slog.String("peer", peer.Addr), slog.String("name", peer.Name),
		slog.String("why", why), slog.Int("refusals_not_logged", n))
}
