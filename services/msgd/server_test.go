package msgd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServe: one msgd serves NATS clients (pub/sub, queue group,
// request/reply), its status and readiness over the bus and HTTP, and
// NATS's monitoring under /v1/nats; after Stop it is not ready and its
// clients are disconnected.
func TestServe(t *testing.T) {
	n := startNode(t, common(t), testConfig())
	nc := connect(t, n)

	sub, err := nc.SubscribeSync("greet.*")
	if err != nil {
		t.Fatal(err)
	}
	q1, _ := nc.QueueSubscribeSync("work", "workers")
	q2, _ := nc.QueueSubscribeSync("work", "workers")
	if _, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(append([]byte("re: "), m.Data...)) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("greet.world", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "hello" {
		t.Fatalf("NextMsg = %v, %v", m, err)
	}
	for i := range 10 {
		if err := nc.Publish("work", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(q1) + drain(q2); got != 10 {
		t.Errorf("queue group received %d messages; want 10, each once", got)
	}
	if m, err := nc.Request("echo", []byte("ping"), 5*time.Second); err != nil || string(m.Data) != "re: ping" {
		t.Fatalf("Request = %v, %v", m, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	client := daemontest.NewRuntime(t, "client")
	var st adminpb.Status
	if err := client.Bus.Call(ctx, n.rt.Bus.Addr().String(), wire.ProtoAdmin, "Status", &adminpb.StatusRequest{}, &st); err != nil {
		t.Fatalf("bus Status: %v", err)
	}
	if st.GetDaemon() != msgd.Name || !st.GetReady() || !st.GetChecks()[msgd.ReadyCheck].GetOk() {
		t.Errorf("Status = %v; want msgd ready", &st)
	}
	if st.GetAddresses()["nats"] == "" || st.GetAddresses()["nats-cluster"] == "" {
		t.Errorf("addresses = %v; want nats and nats-cluster", st.GetAddresses())
	}
	var varz struct {
		ServerName string `json:"server_name"`
		MaxPayload int    `json:"max_payload"`
		InMsgs     int    `json:"in_msgs"`
	}
	getJSON(t, n, "/v1/nats/varz", &varz)
	if varz.ServerName != msgd.ServerName(n.rt.NodeID) || varz.MaxPayload != msgd.DefaultMaxPayload || varz.InMsgs < 12 {
		t.Errorf("/v1/nats/varz = %+v", varz)
	}
	var connz struct {
		NumConns int `json:"num_connections"`
	}
	getJSON(t, n, "/v1/nats/connz", &connz)
	if connz.NumConns < 1 {
		t.Errorf("/v1/nats/connz = %+v; want our connection", connz)
	}

	if err := n.srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, failed := n.rt.Admin.Ready(ctx); ok || failed[msgd.ReadyCheck] == nil {
		t.Errorf("after Stop: ready=%v failed=%v; want the msgd check failing", ok, failed)
	}
	eventually(t, 5*time.Second, "client disconnected", func() error {
		if nc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
}

// drain counts the messages waiting on sub.
func drain(sub *nats.Subscription) int {
	n := 0
	for {
		if _, err := sub.NextMsg(200 * time.Millisecond); err != nil {
			return n
		}
		n++
	}
}

func getJSON(t *testing.T, n *node, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + n.rt.Admin.Addr().String() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	defer http.DefaultClient.CloseIdleConnections()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// rawLine sends protocol lines (a CONNECT first) to the NATS port and
// returns the first line the server answers after its INFO.
func rawLine(t *testing.T, n *node, lines ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(n.url(t), "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if info, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("INFO = %q, %v", info, err)
	}
	if _, err := io.WriteString(c, strings.Join(lines, "\r\n")+"\r\nPING\r\n"); err != nil {
		t.Fatal(err)
	}
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return strings.TrimSpace(l)
}

// TestBadInput: invalid subjects, oversized messages and bad credentials
// get NATS's own errors; msgd keeps serving.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.conf")
	if err := os.WriteFile(auth, []byte(`authorization { users = [ {user: app, password: s3cret} ] }`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.AuthFile = auth
	cfg.MaxPayload = 1024
	n := startNode(t, common(t), cfg)

	if _, err := nats.Connect(n.url(t), nats.UserInfo("app", "wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect with a wrong password: %v; want %v", err, nats.ErrAuthorization)
	}
	if _, err := nats.Connect(n.url(t)); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("connect without credentials: %v; want %v", err, nats.ErrAuthorization)
	}
	nc := connect(t, n, nats.UserInfo("app", "s3cret"))
	if err := nc.Publish("big", make([]byte, 1025)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("publish 1025 B over a 1024 B limit: %v; want %v", err, nats.ErrMaxPayload)
	}
	if _, err := nc.SubscribeSync("bad subject"); !errors.Is(err, nats.ErrBadSubject) {
		t.Errorf("subscribe to %q: %v; want %v", "bad subject", err, nats.ErrBadSubject)
	}
	// The server's own checks, past the client library's.
	const user = `CONNECT {"verbose":false,"user":"app","pass":"s3cret","pedantic":true}`
	for _, tt := range []struct {
		lines []string
		want  string
	}{
		{[]string{user, "PUB big 2000", strings.Repeat("x", 2000)}, "-ERR 'Maximum Payload Violation'"},
		{[]string{user, "SUB foo..bar 1"}, "-ERR 'Invalid Subject'"},
		{[]string{user, "PUB foo.* 1", "x"}, "-ERR 'Invalid Publish Subject'"},
		{[]string{`CONNECT {"user":"app","pass":"nope"}`}, "-ERR 'Authorization Violation'"},
	} {
		if got := rawLine(t, n, tt.lines...); got != tt.want {
			t.Errorf("%q answered %q; want %q", tt.lines[len(tt.lines)-1], got, tt.want)
		}
	}
	// Still serving.
	sub, err := nc.SubscribeSync("ok")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish("ok", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(5 * time.Second); err != nil || string(m.Data) != "still here" {
		t.Fatalf("after bad input: %v, %v", m, err)
	}
	if err := ready(n); err != nil {
		t.Error(err)
	}
}

// TestClientTLS: with ClientTLS verify, a client needs TLS and a
// certificate from the cluster CA.
func TestClientTLS(t *testing.T) {
	cfg := testConfig()
	cfg.ClientTLS = msgd.ClientTLSVerify
	n := startNode(t, common(t), cfg)
	if _, err := nats.Connect(n.url(t), nats.Timeout(2*time.Second)); err == nil {
		t.Error("plain-text connect succeeded; want it refused")
	}
	tc, err := daemontest.CA(t).Config("app")
	if err != nil {
		t.Fatal(err)
	}
	nc := connect(t, n, nats.Secure(tc))
	if !nc.TLSRequired() {
		t.Error("server does not require TLS")
	}
	other, err := daemontest.NewCA(t).Config("stranger")
	if err != nil {
		t.Fatal(err)
	}
	other.RootCAs = tc.RootCAs // trusts the server, but its own certificate is foreign
	if _, err := nats.Connect(n.url(t), nats.Secure(other), nats.Timeout(2*time.Second)); err == nil {
		t.Error("client with a certificate from another CA connected; want refused")
	}
}

// TestJetStreamStandalone: without clustering JetStream runs at once, on
// file storage under the data dir, and keeps acknowledged messages across
// a restart.
func TestJetStreamStandalone(t *testing.T) {
	c := common(t)
	cfg := testConfig()
	cfg.NoCluster = true
	n := startNode(t, c, cfg)
	js, err := jetstream.New(connect(t, n))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, fmt.Sprintf("orders.%d", i), []byte("order")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(n.cfg.DataDir, "jetstream")); err != nil {
		t.Errorf("no JetStream store under the data dir: %v", err)
	}
	n.stop(t)
	c.NodeID, c.DataDir = n.rt.NodeID, filepath.Dir(n.rt.DataDir)
	n2 := startNode(t, c, cfg)
	js2, err := jetstream.New(connect(t, n2))
	if err != nil {
		t.Fatal(err)
	}
	s, err := js2.Stream(ctx, "ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 20 {
		t.Fatalf("after restart: %v, %v; want 20 messages", info, err)
	}
}

// TestLifecycle: msgd goes through what every daemon's server must
// (daemontest.CheckLifecycle), with NATS's monitoring under its admin
// endpoint once ready.
func TestLifecycle(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, msgd.Name, daemontest.CA(t), common(t))
	cfg := testConfig()
	cfg.DataDir = rt.DataDir
	srv, err := msgd.New(cfg, msgd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, TLS: rt.TLS, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{Runtime: rt, Service: srv, ReadyCheck: msgd.ReadyCheck,
		Admin: map[string][]string{"/v1/nats/varz": {"server_name", "max_payload"}}})
}

// TestAuthReload: Reload (SIGHUP's) takes a changed auth file without a
// restart — a new user connects, a removed one is refused and its live
// connection closed — and a broken file keeps the users in force.
func TestAuthReload(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth.conf")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(auth, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`authorization { users = [ {user: alice, password: a1} ] }`)
	cfg := testConfig()
	cfg.AuthFile = auth
	n := startNode(t, common(t), cfg)

	if _, err := nats.Connect(n.url(t), nats.UserInfo("bob", "b2")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("bob before the reload: %v; want %v", err, nats.ErrAuthorization)
	}
	alice := connect(t, n, nats.UserInfo("alice", "a1"), nats.NoReconnect())

	write(`authorization { users = [ {user: bob, password: b2} ] }`)
	n.srv.Reload("test")
	bob := connect(t, n, nats.UserInfo("bob", "b2"))
	if err := bob.Publish("x", []byte("y")); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	}
	if _, err := nats.Connect(n.url(t), nats.UserInfo("alice", "a1")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("alice after her removal: %v; want %v", err, nats.ErrAuthorization)
	}
	eventually(t, 10*time.Second, "alice's live connection closed", func() error {
		if !alice.IsClosed() {
			return errors.New("still open")
		}
		return nil
	})

	// A broken file changes nothing.
	write(`authorization { token = "t" }`)
	n.srv.Reload("test")
	connect(t, n, nats.UserInfo("bob", "b2"))
}
