package cli

import (
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
)

// devCA issues the dev certificates of one directory to every endpoint.
type devCA string

func (d devCA) Config(string) (*tls.Config, error) { return tlsutil.Load(string(d)) }

func (d devCA) Issue(name string, r tlsutil.Role) (*tls.Config, error) {
	ca, err := tlsutil.LoadTestCA(string(d))
	if err != nil {
		return nil, err
	}
	return ca.Issue(name, r)
}

// fakeRaftd starts a fake raftd cluster with dev certificates in a fresh
// certs dir and returns it with the flags that reach it.
func fakeRaftd(t *testing.T, o kvclienttest.Options) (*kvclienttest.Cluster, []string) {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "certs")
	if err := tlsutil.EnsureDev(certs, "node-1", []string{"127.0.0.1"}, 1); err != nil {
		t.Fatal(err)
	}
	o.CA = devCA(certs)
	fc := kvclienttest.Start(t, o)
	return fc, []string{"--addr", strings.Join(fc.Addrs(), ","), "--certs-dir", certs}
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, args...)
	if code != 0 {
		t.Fatalf("%q: exit %d: %s", args, code, errOut)
	}
	return out
}

func TestKVCommands(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{SplitPoints: [][]byte{[]byte("m")}, PageSize: 2})
	// kv builds "kv SUB <conn flags> ARGS...": flags go before arguments.
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}

	out := runOK(t, kv("put", "--output", "json", "alpha", "one")...)
	var put struct{ Key, Timestamp string }
	if err := json.Unmarshal([]byte(out), &put); err != nil || put.Key != "alpha" || put.Timestamp == "" {
		t.Fatalf("put json = %q (%v)", out, err)
	}
	if got, _ := fc.Value("alpha"); got != "one" {
		t.Fatalf("stored alpha = %q", got)
	}
	out = runOK(t, kv("get", "--output", "json", "alpha")...)
	var get struct {
		Key, Value, Timestamp string
		Found                 *bool
	}
	if err := json.Unmarshal([]byte(out), &get); err != nil || get.Value != "one" || get.Timestamp != put.Timestamp || get.Found == nil || !*get.Found {
		t.Fatalf("get json = %q (%v); want value one at %s", out, err, put.Timestamp)
	}
	out = runOK(t, kv("get", "--consistency", "stale", "alpha")...)
	for _, want := range []string{"KEY", "alpha", "one", put.Timestamp} {
		if !strings.Contains(out, want) {
			t.Errorf("get table lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut := run(t, kv("get", "--output", "json", "nope")...)
	if code != ExitFailed || !strings.Contains(errOut, "not found") || !strings.Contains(out, `"found": false`) {
		t.Errorf("get missing: exit %d out %q err %q; want 1, found false, not found", code, out, errOut)
	}

	for _, k := range []string{"b", "c", "d", "n", "o", "p"} {
		runOK(t, kv("put", k, "v"+k)...)
	}
	out = runOK(t, kv("scan", "--start", "b", "--end", "o", "--output", "json")...)
	var scan struct {
		KVs   []struct{ Key, Value, Timestamp string }
		Count int
		More  bool
	}
	if err := json.Unmarshal([]byte(out), &scan); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range scan.KVs {
		keys = append(keys, kv.Key)
	}
	if strings.Join(keys, ",") != "b,c,d,n" || scan.Count != 4 || scan.More || scan.KVs[0].Value != "vb" {
		t.Errorf("scan [b, o) = %+v", scan)
	}
	out = runOK(t, kv("scan", "--reverse", "--limit", "3", "--keys-only")...)
	if lines := strings.Fields(out); strings.Join(lines, " ") != "KEY p o n (3 shown; more past --limit)" {
		t.Errorf("reverse keys-only scan:\n%s", out)
	}

	out = runOK(t, kv("cas", "--expect", "one", "alpha", "two")...)
	if !strings.HasPrefix(out, "OK alpha at ") {
		t.Errorf("cas = %q", out)
	}
	code, out, errOut = run(t, kv("cas", "--expect", "one", "--output", "json", "alpha", "three")...)
	var cas struct {
		Succeeded bool
		Current   *struct{ Value string }
	}
	if code != ExitFailed || json.Unmarshal([]byte(out), &cas) != nil || cas.Succeeded || cas.Current == nil || cas.Current.Value != "two" {
		t.Errorf("failing cas: exit %d %q %q", code, out, errOut)
	}
	runOK(t, kv("cas", "--expect-absent", "fresh", "new")...)
	if out := runOK(t, kv("cas", "--expect", "new", "--delete", "fresh")...); !strings.HasPrefix(out, "deleted fresh at ") {
		t.Errorf("cas --delete printed %q; want it to say it deleted", out)
	}
	if _, ok := fc.Value("fresh"); ok {
		t.Error("cas --delete left the key")
	}

	out = runOK(t, kv("del", "alpha")...)
	if out != "deleted 1\n" {
		t.Errorf("del = %q", out)
	}
	out = runOK(t, kv("del", "--end", "o", "--output", "json", "b")...)
	if !strings.Contains(out, `"deleted": 4`) {
		t.Errorf("del span = %q", out)
	}
	if fc.Len() != 2 {
		t.Errorf("%d keys left; want 2 (o, p)", fc.Len())
	}
}

func TestKVRetriesThroughFailures(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{Nodes: 2, NoDescriptors: true})
	fc.Inject(0, kvclient.MethodPut, bus.Errorf(bus.CodeUnavailable, "starting"))
	fc.Inject(1, kvclient.MethodPut, bus.NotLeader(""))
	runOK(t, append(append([]string{"kv", "put"}, conn...), "k", "v")...)
	if got, _ := fc.Value("k"); got != "v" {
		t.Errorf("stored %q", got)
	}
}

func TestKVUsageErrors(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{Nodes: 1})
	for _, args := range [][]string{
		{"kv", "get"},
		{"kv", "get", "a", "b"},
		{"kv", "get", ""},
		{"kv", "get", "\x00sys"},
		{"kv", "get", "--consistency", "eventual", "a"},
		{"kv", "get", "--max-staleness", "-5s", "a"},
		{"kv", "get", "--max-staleness", "0s", "a"},
		{"kv", "get", "--max-staleness", "25h", "a"},
		{"kv", "get", "--max-staleness", "5s", "--consistency", "stale", "a"},
		{"kv", "scan", "--max-staleness", "-1s"},
		{"kv", "scan", "--max-staleness", "1000h"},
		{"kv", "get", "--output", "yaml", "a"},
		{"kv", "get", "a", "--output", "json"},
		{"kv", "put", "a"},
		{"kv", "del", "--end", "a", "b"},
		{"kv", "scan", "--start", "b", "--end", "a"},
		{"kv", "scan", "--limit", "-1"},
		{"kv", "scan", "extra"},
		{"kv", "cas", "a", "v"},
		{"kv", "cas", "--expect", "x", "--expect-absent", "a", "v"},
		{"kv", "cas", "--expect", "x", "--delete", "a", "v"},
		{"kv", "cas", "--expect-absent", "--delete", "a"},
		{"kv", "get", "--encoding", "rot13", "a"},
		{"kv", "get", "--encoding", "hex", "zz"},
		{"kv", "get", "--encoding", "hex", "0061"},
		{"kv", "put", "--encoding", "base64", "YQ==", "!!"},
		{"kv", "del", "--encoding", "hex", "--end", "6161", "6262"},
		{"kv", "scan", "--encoding", "hex", "--start", "6262", "--end", "6161"},
		{"kv", "scan", "--encoding", "base64", "--start", "%"},
		{"kv", "cas", "--encoding", "hex", "--expect", "zz", "6161", "6161"},
		{"kv", "cas", "--encoding", "hex", "--expect", "6161", "6161", "zz"},
		{"init", "--split-points", "a,b", "--initial-ranges", "4"},
		{"init", "--split-points", "a,,b"},
		{"init", "--split-points", "a,a"},
		{"init", "--replicas", "0"},
		{"init", "--initial-ranges", "-2"},
		{"ranges", "extra"},
	} {
		// Connection flags go right after the (sub)command name.
		n := 1
		if args[0] == "kv" {
			n = 2
		}
		full := append(append(append([]string{}, args[:n]...), conn...), args[n:]...)
		code, _, errOut := run(t, full...)
		if code != ExitUsage {
			t.Errorf("%q: exit %d; want %d (%s)", args, code, ExitUsage, errOut)
		}
	}
	code, _, errOut := run(t, "kv", "get", "--addr", "raftd", "--certs-dir", conn[3], "a")
	if code != ExitUsage || !strings.Contains(errOut, "--addr") {
		t.Errorf("bad --addr: exit %d %q; want 2 naming --addr", code, errOut)
	}
	code, _, errOut = run(t, "kv", "get", "--addr", fc.Addrs()[0], "--certs-dir", t.TempDir(), "a")
	if code != ExitFailed || !strings.Contains(errOut, "--certs-dir") {
		t.Errorf("missing certs: exit %d %q; want 1 naming --certs-dir", code, errOut)
	}
	// Nothing listens: the command fails at once (well before its 1m
	// timeout, which would say "deadline") with a hint.
	code, _, errOut = run(t, "kv", "put", "--addr", "127.0.0.1:1", "--certs-dir", conn[3], "--timeout", "1m", "a", "b")
	if code != ExitFailed || !strings.Contains(errOut, "no raftd listening") || !strings.Contains(errOut, "hint: nothing listens at 127.0.0.1:1") ||
		!strings.Contains(errOut, "pleiades status") || strings.Contains(errOut, "deadline") {
		t.Errorf("no raftd: exit %d %q; want 1 at once, with a hint", code, errOut)
	}
	if fc.Len() != 0 {
		t.Errorf("bad command lines wrote %d keys", fc.Len())
	}
}

func TestInitAndRanges(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{Uninitialized: true})
	out := runOK(t, append([]string{"init", "--split-points", "g,p", "--output", "json"}, conn...)...)
	var v struct {
		AlreadyInitialized bool `json:"already_initialized"`
		Ranges             []struct {
			RangeID  uint64 `json:"range_id,string"`
			StartKey string `json:"start_key"`
			EndKey   string `json:"end_key"`
			Replicas []struct {
				NodeID uint64 `json:"node_id,string"`
			} `json:"replicas"`
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("init json: %v\n%s", err, out)
	}
	if v.AlreadyInitialized || len(v.Ranges) != 4 || v.Ranges[2].StartKey != "g" || v.Ranges[2].EndKey != "p" || len(v.Ranges[2].Replicas) != 3 {
		t.Fatalf("init = %+v", v)
	}
	// Init again: with the same layout (in any order) or none asked for, it
	// succeeds; asking for another one fails and says why.
	for _, args := range [][]string{{"init"}, {"init", "--split-points", "p,g"}, {"init", "--split-points", "g", "--replicas", "3"}} {
		out = runOK(t, append(args, conn...)...)
		if !strings.Contains(out, "already initialized: 4 ranges") || !strings.Contains(out, "[g, p)") || !strings.Contains(out, "[p, +∞)") {
			t.Errorf("%q again:\n%s", args, out)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--initial-ranges", "16"}, "it has 3 user ranges, not the 16 initial ranges asked for"},
		{[]string{"init", "--split-points", "g,x"}, `split points "x" are not boundaries`},
		{[]string{"init", "--replicas", "1", "--output", "json"}, "has 3 replicas, not 1"},
	} {
		code, out, errOut := run(t, append(tt.args, conn...)...)
		if code != ExitFailed || !strings.Contains(errOut, "already initialized with another layout") || !strings.Contains(errOut, tt.want) || !strings.Contains(out, "g") {
			t.Errorf("%q: exit %d, out %q, err %q; want 1, the ranges, and %q", tt.args, code, out, errOut, tt.want)
		}
	}

	out = runOK(t, append([]string{"ranges", "--output", "json"}, conn...)...)
	var rv struct {
		NodeID   uint64 `json:"node_id,string"`
		Replicas []struct {
			RangeID   uint64 `json:"range_id,string"`
			RaftState string `json:"raft_state"`
			Term      uint64
			LogBytes  uint64 `json:"log_bytes"`
			Quiesced  bool
			Followers []struct {
				ReplicaID uint64 `json:"replica_id,string"`
				Match     uint64
				State     string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rv); err != nil {
		t.Fatalf("ranges json: %v\n%s", err, out)
	}
	if rv.NodeID != 1 || len(rv.Replicas) != 3 || rv.Replicas[0].RaftState != "leader" || rv.Replicas[1].RaftState != "follower" || rv.Replicas[0].Term != 2 || rv.Replicas[0].LogBytes == 0 {
		t.Errorf("ranges = %+v", rv)
	}
	if f := rv.Replicas[0].Followers; len(f) != 2 || f[0].ReplicaID != 2 || f[0].Match != 10 || f[1].Match != 7 || f[1].State != "replicate" || rv.Replicas[1].Followers != nil {
		t.Errorf("leader's followers = %+v, a follower's %+v; want r2 at 10, r3 at 7 replicating, none", f, rv.Replicas[1].Followers)
	}
	out = runOK(t, append([]string{"ranges"}, conn...)...)
	for _, want := range []string{"node 1: 3 replicas", "RANGE", "SPAN", "QUIESCED", "leader", "follower", "n1/r1", "[\"\\x01\", g)", "10 entries, 1000 B", "n1/r1,n2/r2,n3/r3(-3)"} {
		if !strings.Contains(out, want) {
			t.Errorf("ranges table lacks %q:\n%s", want, out)
		}
	}
}

func TestKVEncodings(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{})
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}
	// Key ff01 and value 80ff are not UTF-8; "plain" and "text" are.
	binKey, binVal := "\xff\x01", "\x80\xff"
	runOK(t, kv("put", "--encoding", "hex", "ff01", "80ff")...)
	if got, ok := fc.Value(binKey); !ok || got != binVal {
		t.Fatalf("stored %q %v; want %q", got, ok, binVal)
	}
	runOK(t, kv("put", "--encoding", "base64", "cGxhaW4=", "dGV4dA==")...)
	if got, _ := fc.Value("plain"); got != "text" {
		t.Fatalf("stored plain = %q; want text", got)
	}

	type view struct {
		Key           string `json:"key"`
		KeyEncoding   string `json:"key_encoding"`
		Value         string `json:"value"`
		ValueEncoding string `json:"value_encoding"`
	}
	getJSON := func(args ...string) view {
		t.Helper()
		out := runOK(t, kv("get", append([]string{"--output", "json"}, args...)...)...)
		var v view
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		return v
	}
	tests := []struct {
		name string
		args []string
		want view
	}{
		{"text marks non-UTF-8 as base64", []string{binKey}, view{"/wE=", "base64", "gP8=", "base64"}},
		{"hex", []string{"--encoding", "hex", "ff01"}, view{"ff01", "hex", "80ff", "hex"}},
		{"base64", []string{"--encoding", "base64", "/wE="}, view{"/wE=", "base64", "gP8=", "base64"}},
		{"text stays text", []string{"plain"}, view{"plain", "", "text", ""}},
		{"hex of text", []string{"--encoding", "hex", "706c61696e"}, view{"706c61696e", "hex", "74657874", "hex"}},
	}
	for _, tt := range tests {
		if got := getJSON(tt.args...); got != tt.want {
			t.Errorf("%s: get %q = %+v; want %+v", tt.name, tt.args, got, tt.want)
		}
	}

	out := runOK(t, kv("get", "--encoding", "base64", "/wE=")...)
	if !strings.Contains(out, "/wE=") || !strings.Contains(out, "gP8=") {
		t.Errorf("base64 table lacks the encoded key and value:\n%s", out)
	}
	out = runOK(t, kv("scan", "--output", "json")...)
	var scan struct{ KVs []view }
	if err := json.Unmarshal([]byte(out), &scan); err != nil {
		t.Fatal(err)
	}
	wantScan := []view{{"plain", "", "text", ""}, {"/wE=", "base64", "gP8=", "base64"}}
	if len(scan.KVs) != 2 || scan.KVs[0] != wantScan[0] || scan.KVs[1] != wantScan[1] {
		t.Errorf("scan = %+v; want %+v", scan.KVs, wantScan)
	}
	out = runOK(t, kv("scan", "--encoding", "hex", "--start", "ff", "--keys-only")...)
	if f := strings.Fields(out); strings.Join(f, " ") != "KEY ff01" {
		t.Errorf("hex scan from ff:\n%s", out)
	}

	runOK(t, kv("cas", "--encoding", "base64", "--expect", "gP8=", "/wE=", "AAE=")...)
	if got, _ := fc.Value(binKey); got != "\x00\x01" {
		t.Errorf("after cas %s = %q; want 0001", binKey, got)
	}
	code, out, _ := run(t, kv("cas", "--encoding", "hex", "--output", "json", "--expect", "80ff", "ff01", "00")...)
	var cas struct {
		KeyEncoding string `json:"key_encoding"`
		Current     *view
	}
	if code != ExitFailed || json.Unmarshal([]byte(out), &cas) != nil || cas.KeyEncoding != "hex" || cas.Current == nil || cas.Current.Value != "0001" {
		t.Errorf("failing hex cas: exit %d %q; want current 0001 in hex", code, out)
	}
	out = runOK(t, kv("del", "--encoding", "hex", "--end", "ff02", "--output", "json", "ff01")...)
	if !strings.Contains(out, `"deleted": 1`) || !strings.Contains(out, `"end": "ff02"`) {
		t.Errorf("hex del span = %q", out)
	}
	if _, ok := fc.Value(binKey); ok {
		t.Error("del left the binary key")
	}
}

func TestKVBeforeInit(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{Uninitialized: true})
	code, _, errOut := run(t, append(append([]string{"kv", "get"}, conn...), "--timeout", "30s", "a")...)
	if code != ExitFailed || !strings.Contains(errOut, "run `pleiades init`") || strings.Contains(errOut, "deadline") {
		t.Errorf("get before init: exit %d %q; want 1 with the init hint, before the deadline", code, errOut)
	}
	if n := fc.Calls(0, kvclient.MethodGet) + fc.Calls(1, kvclient.MethodGet) + fc.Calls(2, kvclient.MethodGet); n != 3 {
		t.Errorf("%d Get attempts; want one per node", n)
	}

	// Boundaries that are not UTF-8 (0x80 of 4 initial ranges) stay intact
	// in JSON, in base64.
	out := runOK(t, append([]string{"init", "--initial-ranges", "4", "--output", "json"}, conn...)...)
	var v struct {
		Ranges []struct {
			StartKey         string `json:"start_key"`
			StartKeyEncoding string `json:"start_key_encoding"`
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range v.Ranges {
		if r.StartKeyEncoding == "base64" && r.StartKey == "gA==" {
			found = true
		}
	}
	if !found {
		t.Errorf("init json lacks start key 0x80 in base64:\n%s", out)
	}
	out = runOK(t, append([]string{"ranges", "--output", "json"}, conn...)...)
	if !strings.Contains(out, `"start_key": "gA=="`) || !strings.Contains(out, `"start_key_encoding": "base64"`) {
		t.Errorf("ranges json lacks start key 0x80 in base64:\n%s", out)
	}
}

func TestKVValueFile(t *testing.T) {
	fc, conn := fakeRaftd(t, kvclienttest.Options{})
	put := func(args ...string) []string { return append(append([]string{"kv", "put"}, conn...), args...) }
	big := make([]byte, 200<<10) // binary, over any argument limit
	for i := range big {
		big[i] = byte(i * 7)
	}
	path := filepath.Join(t.TempDir(), "value")
	if err := os.WriteFile(path, big, 0o600); err != nil {
		t.Fatal(err)
	}
	runOK(t, put("--value-file", path, "blob")...)
	if got, ok := fc.Value("blob"); !ok || got != string(big) {
		t.Fatalf("stored %d bytes, found %v; want the file's %d", len(got), ok, len(big))
	}
	// And back: get writes the value as it is, to a file or to stdout.
	get := func(args ...string) []string { return append(append([]string{"kv", "get"}, conn...), args...) }
	out := filepath.Join(t.TempDir(), "out")
	if stdout := runOK(t, get("--value-file", out, "blob")...); stdout != "" {
		t.Errorf("get --value-file printed %q", stdout)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != string(big) {
		t.Errorf("get --value-file wrote %d bytes, %v; want the %d put", len(got), err, len(big))
	}
	if stdout := runOK(t, get("--value-file", "-", "blob")...); stdout != string(big) {
		t.Errorf("get --value-file - printed %d bytes; want the %d put", len(stdout), len(big))
	}
	if code, _, errOut := run(t, get("--value-file", out, "absent")...); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("get --value-file of an absent key: exit %d, %q; want not found", code, errOut)
	}

	// "-" reads standard input.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = stdin }()
	go func() {
		_, _ = w.Write([]byte("from stdin"))
		_ = w.Close()
	}()
	runOK(t, put("--value-file", "-", "piped")...)
	if got, _ := fc.Value("piped"); got != "from stdin" {
		t.Errorf("stored %q; want the piped value", got)
	}

	for _, args := range [][]string{
		put("--value-file", path, "k", "v"), // both
		put("k"),                            // neither
		put("--value-file", filepath.Join(t.TempDir(), "none"), "k"), // missing file
	} {
		if code, _, errOut := run(t, args...); code != ExitUsage || !strings.Contains(errOut, "pleiades:") {
			t.Errorf("%q: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
	if _, ok := fc.Value("k"); ok {
		t.Error("a refused put wrote k")
	}
}

// TestLargeValuesInTables: tables show a bounded prefix of a large value
// with its size (a 100 KB value printed a 523 KB line, and scan padded
// every row to it); JSON and --value-file keep every byte.
func TestLargeValuesInTables(t *testing.T) {
	_, conn := fakeRaftd(t, kvclienttest.Options{})
	kv := func(sub string, args ...string) []string {
		return append(append([]string{"kv", sub}, conn...), args...)
	}
	big := strings.Repeat("0123456789", 10240) // 102,400 bytes
	file := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(file, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	runOK(t, kv("put", "--value-file", file, "big")...)
	runOK(t, kv("put", "small", "v")...)
	for _, args := range [][]string{kv("get", "big"), kv("scan")} {
		out := runOK(t, args...)
		if !strings.Contains(out, "… (100.0 KiB)") {
			t.Errorf("%q lacks the cut value's size:\n%.300s", args, out)
		}
		for _, line := range strings.Split(out, "\n") {
			if len(line) > 200 {
				t.Errorf("%q: a line of %d bytes: %.120s...", args, len(line), line)
			}
		}
	}
	var v struct{ Value string }
	if err := json.Unmarshal([]byte(runOK(t, kv("get", "-o", "json", "big")...)), &v); err != nil || v.Value != big {
		t.Errorf("json value of %d bytes (%v); want all %d", len(v.Value), err, len(big))
	}
	out := filepath.Join(t.TempDir(), "out")
	runOK(t, kv("get", "--value-file", out, "big")...)
	if b, err := os.ReadFile(out); err != nil || string(b) != big {
		t.Errorf("--value-file holds %d bytes (%v); want all %d", len(b), err, len(big))
	}
}
