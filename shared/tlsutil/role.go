package tlsutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// Kind is the role a certificate grants its holder.
type Kind uint8

// The roles. KindNone is a certificate of the cluster CA that names no
// role (issued before roles existed): it may call nothing.
const (
	KindNone Kind = iota
	// KindNode is a node (one host's daemons); it carries the node id.
	KindNode
	// KindClient is an application: KV, workflows, events; it may be
	// limited to key prefixes.
	KindClient
	// KindAdmin is an operator: init, ranges, status, store maintenance.
	KindAdmin
)

// String names the kind as the URI does.
func (k Kind) String() string {
	switch k {
	case KindNode:
		return "node"
	case KindClient:
		return "client"
	case KindAdmin:
		return "admin"
	}
	return "none"
}

// RoleScheme is the URI scheme of the role a certificate carries.
const RoleScheme = "pleiades"

// maxPrefixes bounds the prefixes one client certificate may name.
const maxPrefixes = 64

// Role is what a certificate allows: its Kind, the node id of a node
// certificate, and the key prefixes a client certificate is limited to
// (none: every key).
//
// It travels in the certificate as one URI SAN:
//
//	pleiades://node/<id>                  a node, id a non-zero decimal uint64
//	pleiades://client                     an application, every key
//	pleiades://client?prefix=a%2F&prefix=b an application, keys under a/ or b
//	pleiades://admin                      an operator
//
// Prefixes are query-escaped bytes, so any key prefix can be named.
type Role struct {
	Kind     Kind
	NodeID   uint64
	Prefixes [][]byte
}

// NodeRole, ClientRole and AdminRole build roles.
func NodeRole(id uint64) Role { return Role{Kind: KindNode, NodeID: id} }

// ClientRole is an application role limited to prefixes (none: every key).
func ClientRole(prefixes ...[]byte) Role { return Role{Kind: KindClient, Prefixes: prefixes} }

// AdminRole is the operator role.
func AdminRole() Role { return Role{Kind: KindAdmin} }

// String describes the role for logs and errors, e.g. "node 7".
func (r Role) String() string {
	switch r.Kind {
	case KindNode:
		return "node " + strconv.FormatUint(r.NodeID, 10)
	case KindClient:
		if len(r.Prefixes) == 0 {
			return "client"
		}
		ps := make([]string, len(r.Prefixes))
		for i, p := range r.Prefixes {
			ps[i] = strconv.Quote(string(p))
		}
		return "client (prefixes " + strings.Join(ps, ", ") + ")"
	}
	return r.Kind.String()
}

// URI encodes the role as its certificate URI SAN.
func (r Role) URI() (*url.URL, error) {
	switch r.Kind {
	case KindNode:
		if r.NodeID == 0 {
			return nil, errors.New("tlsutil: a node role needs a non-zero node id")
		}
		return &url.URL{Scheme: RoleScheme, Host: "node", Path: "/" + strconv.FormatUint(r.NodeID, 10)}, nil
	case KindClient:
		if len(r.Prefixes) > maxPrefixes {
			return nil, fmt.Errorf("tlsutil: %d prefixes; at most %d", len(r.Prefixes), maxPrefixes)
		}
		u := &url.URL{Scheme: RoleScheme, Host: "client"}
		q := url.Values{}
		for _, p := range r.Prefixes {
			if len(p) == 0 {
				return nil, errors.New("tlsutil: an empty prefix (leave prefixes out for every key)")
			}
			q.Add("prefix", string(p))
		}
		u.RawQuery = q.Encode()
		return u, nil
	case KindAdmin:
		return &url.URL{Scheme: RoleScheme, Host: "admin"}, nil
	}
	return nil, fmt.Errorf("tlsutil: no URI for role %s", r.Kind)
}

// ParseRole decodes a role URI (see Role). It accepts exactly what URI
// produces.
func ParseRole(s string) (Role, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Role{}, fmt.Errorf("tlsutil: role %q: %w", s, err)
	}
	if u.Scheme != RoleScheme || u.User != nil || u.Opaque != "" || u.Fragment != "" || u.Port() != "" {
		return Role{}, fmt.Errorf("tlsutil: role %q: want %s://node/<id>, %s://client[?prefix=...] or %s://admin", s, RoleScheme, RoleScheme, RoleScheme)
	}
	switch u.Host {
	case "node":
		if u.RawQuery != "" {
			return Role{}, fmt.Errorf("tlsutil: role %q: a node role has no query", s)
		}
		idText, ok := strings.CutPrefix(u.Path, "/")
		id, err := strconv.ParseUint(idText, 10, 64)
		if !ok || err != nil || id == 0 || strconv.FormatUint(id, 10) != idText {
			return Role{}, fmt.Errorf("tlsutil: role %q: want a non-zero decimal node id", s)
		}
		return NodeRole(id), nil
	case "client":
		if u.Path != "" {
			return Role{}, fmt.Errorf("tlsutil: role %q: a client role has no path", s)
		}
		q, err := url.ParseQuery(u.RawQuery)
		if err != nil {
			return Role{}, fmt.Errorf("tlsutil: role %q: %w", s, err)
		}
		for k := range q {
			if k != "prefix" {
				return Role{}, fmt.Errorf("tlsutil: role %q: unknown parameter %q", s, k)
			}
		}
		r := Role{Kind: KindClient}
		if len(q["prefix"]) > maxPrefixes {
			return Role{}, fmt.Errorf("tlsutil: role %q: more than %d prefixes", s, maxPrefixes)
		}
		for _, p := range q["prefix"] {
			if p == "" {
				return Role{}, fmt.Errorf("tlsutil: role %q: empty prefix", s)
			}
			r.Prefixes = append(r.Prefixes, []byte(p))
		}
		return r, nil
	case "admin":
		if u.Path != "" || u.RawQuery != "" {
			return Role{}, fmt.Errorf("tlsutil: role %q: an admin role has no path or query", s)
		}
		return AdminRole(), nil
	}
	return Role{}, fmt.Errorf("tlsutil: role %q: unknown role %q", s, u.Host)
}

// RoleOf returns the role a certificate carries: its one URI SAN of
// scheme pleiades. A certificate without one has KindNone; one with two,
// or an unreadable one, is an error.
func RoleOf(c *x509.Certificate) (Role, error) {
	var (
		r     Role
		found bool
	)
	for _, u := range c.URIs {
		if u.Scheme != RoleScheme {
			continue
		}
		if found {
			return Role{}, errors.New("tlsutil: certificate carries more than one role")
		}
		var err error
		if r, err = ParseRole(u.String()); err != nil {
			return Role{}, err
		}
		found = true
	}
	return r, nil
}

// PeerRole returns the role of the certificate a TLS peer presented (its
// leaf, PeerCertificates[0]): KindNone when it presented none. It is how
// every listener of the cluster (the bus, msgd's NATS) tells nodes,
// clients and operators apart.
func PeerRole(cs tls.ConnectionState) (Role, error) {
	if len(cs.PeerCertificates) == 0 {
		return Role{}, nil
	}
	return RoleOf(cs.PeerCertificates[0])
}

// RequirePeer returns a tls.Config VerifyConnection function that fails
// the handshake unless the peer's certificate carries a role of one of
// kinds (a certificate without a role, or with an unreadable one, is
// refused too). It adds to the chain's verification against the cluster
// CA, which the configuration must still do (ClientCAs and
// RequireAndVerifyClientCert on a listener, RootCAs when dialing); used
// on both sides of a connection it checks each side's peer.
func RequirePeer(kinds ...Kind) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		r, err := PeerRole(cs)
		if err != nil {
			return fmt.Errorf("tlsutil: peer certificate: %w", err)
		}
		for _, k := range kinds {
			if r.Kind == k {
				return nil
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tlsutil: the peer presented no certificate")
		}
		return fmt.Errorf("tlsutil: peer certificate %q has role %s; want %s", cs.PeerCertificates[0].Subject.CommonName, r, kindList(kinds))
	}
}

// kindList names kinds for an error: "node", "node or client".
func kindList(kinds []Kind) string {
	ns := make([]string, len(kinds))
	for i, k := range kinds {
		ns[i] = k.String()
	}
	return strings.Join(ns, " or ")
}

// AllowsKey reports whether the role may touch key: every key unless it
// is a client role limited to prefixes.
func (r Role) AllowsKey(key []byte) bool {
	if r.Kind != KindClient || len(r.Prefixes) == 0 {
		return true
	}
	for _, p := range r.Prefixes {
		if bytes.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// AllowsSpan reports whether every key in [start, end) lies under one of
// the role's prefixes (end empty: the single key start when single, else
// everything from start on).
func (r Role) AllowsSpan(start, end []byte) bool {
	if r.Kind != KindClient || len(r.Prefixes) == 0 {
		return true
	}
	for _, p := range r.Prefixes {
		if !bytes.HasPrefix(start, p) {
			continue
		}
		lim := kvpb.PrefixEnd(p)
		if lim == nil {
			return true // the prefix is all 0xff: every key from it on
		}
		if len(end) > 0 && bytes.Compare(end, lim) <= 0 {
			return true
		}
	}
	return false
}
