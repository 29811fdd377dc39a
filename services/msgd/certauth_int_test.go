package msgd_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// issue returns a TLS configuration with a certificate of the test
// cluster's CA for role r.
func issue(t *testing.T, name string, r tlsutil.Role) *tls.Config {
	t.Helper()
	tc, err := daemontest.CA(t).Issue(name, r)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// routeGreeting dials the route listener at addr as a NATS route does
// (TLS with the certificate of tc) and returns the first line the server
// sends (a route's INFO), or the error that ends the connection first.
func routeGreeting(t *testing.T, addr string, tc *tls.Config) (string, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, tc)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return bufio.NewReader(c).ReadString('\n')
}

// TestRoutesNodeCertificatesOnly: msgd's route listener takes node
// certificates of the cluster CA only: a client certificate (limited or
// not), an admin certificate or one without a role fails the handshake
// before NATS says a word, where a node certificate gets the route's
// INFO; and two msgd, with their node certificates, form a cluster.
func TestRoutesNodeCertificatesOnly(t *testing.T) {
	cfg := testConfig()
	cfg.JetStream = false
	a := startNode(t, common(t), cfg)
	route := a.address(t, "nats-cluster")

	for _, tt := range []struct {
		name string
		role tlsutil.Role
	}{
		{"client", tlsutil.ClientRole()},
		{"client with prefixes", tlsutil.ClientRole([]byte("app/"))},
		{"admin", tlsutil.AdminRole()},
		{"no role", tlsutil.Role{}},
	} {
		line, err := routeGreeting(t, route, issue(t, tt.name, tt.role))
		if err == nil {
			t.Errorf("%s certificate: the route listener answered %q; want the handshake refused", tt.name, strings.TrimSpace(line))
		}
	}
	line, err := routeGreeting(t, route, issue(t, "node", tlsutil.NodeRole(4242)))
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("node certificate: %q, %v; want the route's INFO", line, err)
	}

	// A second msgd routes to the first with its own node certificate.
	bcfg := testConfig()
	bcfg.JetStream = false
	bcfg.Routes = []string{route}
	b := startNode(t, common(t), bcfg)
	eventually(t, 30*time.Second, "the two msgd routed to each other", func() error {
		if got := routedTo(t, a); !slices.Contains(got, msgd.ServerName(b.rt.NodeID)) {
			return fmt.Errorf("first routed to %v", got)
		}
		if got := routedTo(t, b); !slices.Contains(got, msgd.ServerName(a.rt.NodeID)) {
			return fmt.Errorf("second routed to %v", got)
		}
		return nil
	})
	sub, err := connect(t, b).SubscribeSync("across")
	if err != nil {
		t.Fatal(err)
	}
	receiveEventually(t, connect(t, a), sub, "across", []byte("x"))
}

// quiet drops a connection's asynchronous errors (the permissions
// violations the tests provoke, which nats.go would print).
func quiet() nats.Option {
	return nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
}

// denied performs op on nc, flushes (the server answers a refusal before
// the flush's PONG) and reports whether NATS refused it with a
// permissions violation naming subject.
func denied(t *testing.T, nc *nats.Conn, subject string, op func() error) bool {
	t.Helper()
	if err := op(); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush after %s: %v", subject, err)
	}
	err := nc.LastError()
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), fmt.Sprintf("%q", subject))
}

// TestClientCertificatePermissions: under ClientTLS verify without an
// auth file, a client's certificate decides what it may do on NATS: a
// client limited to the key prefix "app1/" publishes and subscribes on
// app1.> only, receives replies on _INBOX.app1.> and answers requests;
// an unlimited client does everything (JetStream included) but publish
// the cluster's events; an admin certificate reads the events; a
// certificate without a role cannot connect.
func TestClientCertificatePermissions(t *testing.T) {
	cfg := testConfig()
	cfg.NoCluster, cfg.ClientTLS = true, msgd.ClientTLSVerify
	n := startNode(t, common(t), cfg)

	if nc, err := nats.Connect(n.url(t), nats.Secure(issue(t, "old", tlsutil.Role{})), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("a certificate without a role connected; want refused")
	}

	app := connect(t, n, nats.Secure(issue(t, "app1", tlsutil.ClientRole([]byte("app1/")))), nats.CustomInboxPrefix("_INBOX.app1"), quiet())
	all := connect(t, n, nats.Secure(issue(t, "app", tlsutil.ClientRole())), quiet())
	ops := connect(t, n, nats.Secure(issue(t, "ops", tlsutil.AdminRole())))

	// Within its prefix.
	own, err := app.SubscribeSync("app1.orders")
	if err != nil {
		t.Fatal(err)
	}
	receiveEventually(t, app, own, "app1.orders", []byte("o-1"))
	receiveEventually(t, all, own, "app1.orders", []byte("o-2"))
	// Requests it makes (replies on its inbox), requests it answers.
	if _, err := all.Subscribe("app1.price", func(m *nats.Msg) { _ = m.Respond([]byte("42")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := app.Subscribe("app1.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	_ = all.Flush()
	_ = app.Flush()
	if m, err := app.Request("app1.price", nil, 10*time.Second); err != nil || string(m.Data) != "42" {
		t.Errorf("request from the limited client: %v, %v", m, err)
	}
	if m, err := all.Request("app1.echo", []byte("hi"), 10*time.Second); err != nil || string(m.Data) != "hi" {
		t.Errorf("request answered by the limited client: %v, %v", m, err)
	}

	// Outside it.
	for _, subj := range []string{"app2.orders", "app1", "pleiades.events.member.join.1", "$JS.API.INFO", "_INBOX.other.1"} {
		if !denied(t, app, subj, func() error { return app.Publish(subj, []byte("x")) }) {
			t.Errorf("limited client published on %s: %v; want a permissions violation", subj, app.LastError())
		}
	}
	for _, subj := range []string{"app2.>", ">", "pleiades.events.>", "_INBOX.>", "$JS.API.>"} {
		if !denied(t, app, subj, func() error { _, err := app.SubscribeSync(subj); return err }) {
			t.Errorf("limited client subscribed to %s: %v; want a permissions violation", subj, app.LastError())
		}
	}
	// The connection stays usable after the refusals.
	receiveEventually(t, app, own, "app1.orders", []byte("o-3"))

	// The unlimited client: any subject, JetStream; not the events.
	free, err := all.SubscribeSync("anything.at.all")
	if err != nil {
		t.Fatal(err)
	}
	receiveEventually(t, all, free, "anything.at.all", []byte("x"))
	js, err := jetstream.New(all)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatalf("unlimited client creating a stream: %v", err)
	}
	if _, err := js.Publish(ctx, "orders.1", []byte("o")); err != nil {
		t.Fatalf("unlimited client publishing to a stream: %v", err)
	}
	evs, err := ops.SubscribeSync("pleiades.events.>")
	if err != nil {
		t.Fatal(err)
	}
	_ = ops.Flush()
	if !denied(t, all, "pleiades.events.member.join.1", func() error { return all.Publish("pleiades.events.member.join.1", []byte("{}")) }) {
		t.Errorf("unlimited client published a cluster event: %v; want a permissions violation", all.LastError())
	}
	// The operator publishes (and reads) them, as a node would.
	receiveEventually(t, ops, evs, "pleiades.events.test.1", []byte("{}"))
}

// TestClientCertificatesWithAuthFile: with an auth file, its users and
// their permissions decide what a connection may do, under ClientTLS
// verify as before; the certificate must still carry a role.
func TestClientCertificatesWithAuthFile(t *testing.T) {
	auth := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(auth, []byte(`authorization { users = [ {user: app, password: s3cret, permissions: {publish: "orders.>", subscribe: "orders.>"}} ] }`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.NoCluster, cfg.ClientTLS, cfg.AuthFile = true, msgd.ClientTLSVerify, auth
	n := startNode(t, common(t), cfg)

	limited := issue(t, "app1", tlsutil.ClientRole([]byte("app1/")))
	if _, err := nats.Connect(n.url(t), nats.Secure(limited), nats.UserInfo("app", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("wrong password: %v; want %v", err, nats.ErrAuthorization)
	}
	if nc, err := nats.Connect(n.url(t), nats.Secure(issue(t, "old", tlsutil.Role{})), nats.UserInfo("app", "s3cret"), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Error("a certificate without a role connected with a valid user; want refused")
	}
	nc := connect(t, n, nats.Secure(limited), nats.UserInfo("app", "s3cret"), quiet())
	sub, err := nc.SubscribeSync("orders.new")
	if err != nil {
		t.Fatal(err)
	}
	receiveEventually(t, nc, sub, "orders.new", []byte("o"))
	if !denied(t, nc, "app1.x", func() error { return nc.Publish("app1.x", nil) }) {
		t.Errorf("user app published outside its file permissions: %v", nc.LastError())
	}
}
