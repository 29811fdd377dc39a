package msgd

import (
	"encoding/base64"
	"strings"
	"unicode"
	"unicode/utf8"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// certAuth authenticates NATS clients by their certificate's role when
// ClientTLS is verify and there is no auth file: the TLS handshake has
// already checked the certificate against the cluster CA and its role's
// kind (tlsutil.RequirePeer); certAuth gives the connection the role's
// permissions (rolePermissions). The one connection without TLS is the
// event bridge's, in process, which proves its nkey.
type certAuth struct {
	// bridge is the event bridge's public nkey and perms its permissions.
	bridge string
	perms  *natsserver.Permissions
}

// Check implements natsserver.Authentication.
func (a *certAuth) Check(c natsserver.ClientAuthentication) bool {
	if c.Kind() != natsserver.CLIENT {
		return false
	}
	cs := c.GetTLSConnectionState()
	if cs == nil {
		if !a.isBridge(c) {
			return false
		}
		c.RegisterUser(&natsserver.User{Username: "msgd-events", Permissions: a.perms})
		return true
	}
	role, err := tlsutil.PeerRole(*cs)
	if err != nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	perms, ok := rolePermissions(role)
	if !ok {
		return false
	}
	c.RegisterUser(&natsserver.User{Username: cs.PeerCertificates[0].Subject.CommonName, Permissions: perms})
	return true
}

// isBridge reports whether c signed the server's nonce with the bridge's
// nkey (as nats.Nkey does: raw URL base64 of the signature).
func (a *certAuth) isBridge(c natsserver.ClientAuthentication) bool {
	o := c.GetOpts()
	if o == nil || o.Nkey != a.bridge {
		return false
	}
	nonce := c.GetNonce()
	sig, err := base64.RawURLEncoding.DecodeString(o.Sig)
	if len(nonce) == 0 || err != nil {
		return false
	}
	pub, err := nkeys.FromPublicKey(o.Nkey)
	if err != nil {
		return false
	}
	return pub.Verify(nonce, sig) == nil
}

// inboxPrefix is the first token of NATS reply subjects (nats.go's
// default inbox prefix).
const inboxPrefix = "_INBOX"

// rolePermissions returns the NATS permissions of a certificate role, and
// false for a role that may not connect:
//
//   - node and admin certificates: everything (nil permissions);
//   - a client certificate without prefixes: everything but publishing
//     the cluster's events (pleiades.events.>), which only msgd does;
//   - a client certificate limited to key prefixes: publish and
//     subscribe on the subjects of its prefixes (prefixSubjects), receive
//     replies on _INBOX.<subject>.> of each (nats.go's CustomInboxPrefix
//     "_INBOX.<subject>"), and answer the requests it receives (one reply
//     each, within NATS's default two minutes); nothing else, so no
//     JetStream API and no cluster events (a client whose prefixes all map
//     to no subjects connects, and may only answer requests);
//   - a certificate without a role: refused.
func rolePermissions(r tlsutil.Role) (*natsserver.Permissions, bool) {
	switch r.Kind {
	case tlsutil.KindNode, tlsutil.KindAdmin:
		return nil, true
	case tlsutil.KindClient:
	default:
		return nil, false
	}
	if len(r.Prefixes) == 0 {
		return &natsserver.Permissions{
			Publish: &natsserver.SubjectPermission{Allow: []string{">"}, Deny: []string{events.SubjectAll}},
		}, true
	}
	var pub, sub []string
	for _, p := range r.Prefixes {
		subj, ok := prefixSubjects(p)
		if !ok {
			continue
		}
		pub = append(pub, subj...)
		sub = append(sub, subj...)
		base := strings.TrimSuffix(subj[0], ".>")
		sub = append(sub, inboxPrefix+"."+base+".>")
	}
	return &natsserver.Permissions{
		Publish: only(pub), Subscribe: only(sub),
		Response: &natsserver.ResponsePermission{
			MaxMsgs: natsserver.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: natsserver.DEFAULT_ALLOW_RESPONSE_EXPIRATION,
		},
	}, true
}

// only allows subjects and nothing else; with none, it denies every
// subject (NATS reads an empty allow list as no limit).
func only(subjects []string) *natsserver.SubjectPermission {
	if len(subjects) == 0 {
		return &natsserver.SubjectPermission{Deny: []string{">"}}
	}
	return &natsserver.SubjectPermission{Allow: subjects}
}

// prefixSubjects maps a certificate's key prefix to the NATS subjects it
// allows: a key "a/b/c" is the subject "a.b.c" ('/' separates keys' path
// segments as '.' separates subjects' tokens). A prefix ending in '/'
// allows every subject below it ("app/" → "app.>"); one without allows
// that token and every subject below it ("app" → "app", "app.>"), a
// subset of its keys, since NATS permissions cannot name part of a token
// ("app" also covers the key "apple"; the subject "apple" stays
// refused). A prefix maps to nothing (false) when a segment is empty, is
// not UTF-8, or holds '.', a wildcard ('*', '>') or a space or control
// character, and when its first segment names NATS's or the cluster's
// own subjects: starting with '$' (JetStream, system) or '_' (reply
// inboxes), or "pleiades" (the cluster's events).
func prefixSubjects(prefix []byte) ([]string, bool) {
	s := string(prefix)
	below, exact := strings.CutSuffix(s, "/")
	if s == "" || !utf8.ValidString(s) {
		return nil, false
	}
	segs := strings.Split(below, "/")
	for _, seg := range segs {
		if seg == "" || strings.ContainsFunc(seg, func(r rune) bool {
			return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
		}) {
			return nil, false
		}
	}
	cluster, _, _ := strings.Cut(events.Prefix, ".")
	if first := segs[0]; strings.HasPrefix(first, "$") || strings.HasPrefix(first, "_") || first == cluster {
		return nil, false
	}
	subj := strings.Join(segs, ".")
	if exact {
		return []string{subj + ".>"}, true
	}
	return []string{subj + ".>", subj}, true
}
