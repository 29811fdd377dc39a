package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBenchGossipBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "2"},
		{"--profile", "moon"},
		{"--impl", "serf"},
		{"--loss", "1.5"},
		{"--nodes", "8", "--runs", "9"},
	} {
		code, _, stderr := run(t, append([]string{"bench", "gossip"}, args...)...)
		if code != 2 || stderr == "" {
			t.Errorf("bench gossip %v: exit %d, stderr %q; want 2 and a message", args, code, stderr)
		}
	}
}

// TestBenchGossipJSON runs our side only at 4 members with the local
// profile and checks the JSON shape.
func TestBenchGossipJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real-time membership scenario (about 10 s)")
	}
	code, stdout, stderr := run(t, "bench", "gossip", "--nodes", "4", "--runs", "1", "--profile", "local",
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
