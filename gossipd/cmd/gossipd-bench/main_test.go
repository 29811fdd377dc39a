package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's package-level metrics sink runs a ticker goroutine
		// for the life of the process.
		goleak.IgnoreTopFunction("github.com/hashicorp/go-metrics.(*InmemSink).run"),
	)
}

// runArgs runs gossipd-bench with args and returns its exit status,
// standard output and standard error.
func runArgs(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := run(context.Background(), append([]string{"gossipd-bench"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBenchGossipBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "2"},
		{"--profile", "moon"},
		{"--impl", "serf"},
		{"--loss", "1.5"},
		{"--nodes", "8", "--runs", "9"},
	} {
		code, _, stderr := runArgs(t, args...)
		if code != 2 || stderr == "" {
			t.Errorf("gossipd-bench %v: exit %d, stderr %q; want 2 and a message", args, code, stderr)
		}
	}
}

// TestBenchGossipJSON runs our side only at 4 members with the local
// profile and checks the JSON shape.
func TestBenchGossipJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real-time membership scenario (about 10 s)")
	}
	code, stdout, stderr := runArgs(t, "--nodes", "4", "--runs", "1", "--profile", "local",
		"--idle", "200ms", "--fault-time", "1s", "--stall", "200ms", "--stall-every", "500ms", "--impl", "gossipd", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Nodes   int `json:"nodes"`
		Gossipd *struct {
			DetectAll struct {
				Trials   int     `json:"trials"`
				Missed   int     `json:"missed"`
				MedianMS float64 `json:"median_ms"`
			} `json:"detect_all"`
		} `json:"gossipd"`
		Memberlist any `json:"memberlist"`
	}
	if err := json.NewDecoder(strings.NewReader(stdout)).Decode(&res); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, stdout)
	}
	if res.Nodes != 4 || res.Gossipd == nil || res.Memberlist != nil {
		t.Fatalf("result %s", stdout)
	}
	if d := res.Gossipd.DetectAll; d.Trials != 1 || d.Missed != 0 || d.MedianMS <= 0 {
		t.Fatalf("detection %+v", d)
	}
}
