package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/shared/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runArgs runs stored-bench with args and returns its exit status,
// standard output and standard error.
func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := run(context.Background(), append([]string{"stored-bench"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBenchStoreJSON(t *testing.T) {
	code, out, errOut := runArgs(t, "--phase", "30ms", "--concurrency", "1,4", "--batch-ops", "5",
		"--value-bytes", "10", "--keys", "200", "--read-concurrency", "2", "--scan-keys", "20", "--multi-get-keys", "4", "--dir", t.TempDir(), "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"batch_write", "point_read", "scan", "group_commit_gain", "point_read_multi_get"} {
		if x, ok := v[k].(float64); !ok || x <= 0 {
			t.Errorf("%s = %v; want a positive ratio", k, v[k])
		}
	}
	bus, _ := v["bus"].(map[string]any)
	if sb, _ := bus["sync_batches"].([]any); len(sb) != 2 {
		t.Errorf("bus sync_batches = %v; want 2 phases", bus["sync_batches"])
	}
	if _, ok := v["in_process"].(map[string]any); !ok || v["temporary"] != true {
		t.Errorf("in_process = %v, temporary = %v", v["in_process"], v["temporary"])
	}
}

func TestBenchStoreTable(t *testing.T) {
	code, out, errOut := runArgs(t, "--phase", "20ms", "--concurrency", "1,2", "--batch-ops", "2",
		"--value-bytes", "8", "--keys", "50", "--read-concurrency", "1", "--scan-keys", "10")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"(temporary)", "sync batches, 1 writer ", "sync batches, 2 writers", "point reads, misses", "scans", "multi-get keys, 100 per call", "batch_write", "group commit gain", "batched with MultiGet"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "in-process: scans of 10 keys") {
		t.Errorf("progress lacks the in-process scan line:\n%s", errOut)
	}
}

func TestBenchStoreBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "stored"}, "--addr"},
		{[]string{"--concurrency", "1,x"}, "--concurrency"},
		{[]string{"--concurrency", "16,1"}, "ascending"},
		{[]string{"--keys", "0"}, "--keys"},
		{[]string{"--multi-get-keys", "-1"}, "--multi-get-keys"},
		{[]string{"--phase", "0s"}, "--phase"},
		{[]string{"--keys", "10", "--scan-keys", "100"}, "scan keys"},
		{[]string{"-o", "yaml"}, "--output"},
	} {
		code, _, errOut := runArgs(t, tt.args...)
		if code != config.ExitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("stored-bench %v: exit %d %q; want 2 naming %q", tt.args, code, errOut, tt.want)
		}
	}
}
