package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
)

// hostNode is one `pleiades up` of TestNodesOnHosts.
type hostNode struct {
	dir, certs string
	offset     int
	proc       *proc
}

func (n *hostNode) port(base int) string { return strconv.Itoa(base + n.offset) }
func (n *hostNode) raft() string         { return "127.0.0.1:" + n.port(7402) }
func (n *hostNode) gossip() string       { return "127.0.0.1:" + n.port(7403) }
func (n *hostNode) sup() string          { return "127.0.0.1:" + n.port(7500) }

// up starts the node as on a host of its own: buses on every interface,
// advertised at 127.0.0.1, joining the given gossip seeds, with the
// certificates `pleiades cert` made (no --dev) and no raftd peer list.
func (n *hostNode) up(t *testing.T, seeds []string) {
	t.Helper()
	n.proc = start(t, "up", "--data-dir", n.dir, "--certs-dir", n.certs, "--port-offset", strconv.Itoa(n.offset), "--bin-dir", binDir,
		"--listen-host", "0.0.0.0", "--advertise-host", "127.0.0.1", "--join", strings.Join(seeds, ","))
	eventually.NoError(t, 120*time.Second, "node at offset "+strconv.Itoa(n.offset)+" ready", func() error {
		select {
		case <-n.proc.done:
			return fmt.Errorf("pleiades up exited: %v", n.proc.err)
		default:
		}
		v, err := status(t, n.sup())
		if err != nil {
			return err
		}
		return allReady(v, len(daemons))
	})
}

// stop sends SIGTERM to the node's supervisor and waits for it.
func (n *hostNode) stop(t *testing.T) {
	t.Helper()
	if err := n.proc.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, n.proc, 90*time.Second)
}

// TestNodesOnHosts runs three nodes as an operator would on three hosts:
// certificates from `pleiades cert`, each node listening on every
// interface and advertised at its address, joined by gossip seeds alone
// (raftd gets no peer list). `pleiades init --min-nodes 3` against the
// third lays the ranges out over all three; every node serves; the
// second node comes back on other ports and is found there again.
func TestNodesOnHosts(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if _, err := pleiades(t, "cert", "create-ca", "--certs-dir", ca); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*hostNode, 3)
	for i := range nodes {
		// Offsets 200 apart: one 93 to 105 apart would put a node's bus
		// ports (UDP and TCP) on another's admin ports (TCP).
		n := &hostNode{dir: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), offset: 4100 + 200*i}
		n.certs = filepath.Join(n.dir, "certs")
		if _, err := pleiades(t, "cert", "create-node", "--ca-dir", ca, "--out-dir", n.certs, "--name", fmt.Sprintf("host%d", i+1), "--hosts", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	seeds := func(self *hostNode) []string {
		var out []string
		for _, o := range nodes {
			if o != self {
				out = append(out, o.gossip())
			}
		}
		return out
	}
	done := make(chan struct{})
	for _, n := range nodes {
		go func() {
			defer func() { done <- struct{}{} }()
			n.up(t, seeds(n))
		}()
	}
	for range nodes {
		<-done
	}
	if t.Failed() {
		t.FailNow()
	}
	certs := "--certs-dir=" + nodes[0].certs

	out, err := pleiades(t, "init", certs, "--addr", nodes[2].raft(), "--min-nodes", "3", "--timeout", "60s", "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	var iv struct {
		Ranges []struct {
			Replicas []struct {
				NodeID uint64 `json:"node_id,string"`
			} `json:"replicas"`
		} `json:"ranges"`
	}
	if err := json.Unmarshal([]byte(out), &iv); err != nil {
		t.Fatalf("init output: %v: %s", err, out)
	}
	for i, r := range iv.Ranges {
		if len(r.Replicas) != 3 {
			t.Errorf("range %d has %d replicas; want 3 (one per node)", i, len(r.Replicas))
		}
	}
	for i, n := range nodes {
		k, v := fmt.Sprintf("host-key-%d", i), fmt.Sprintf("v%d", i)
		if _, err := pleiades(t, "kv", "put", certs, "--addr", n.raft(), "--timeout", "30s", k, v); err != nil {
			t.Fatalf("put through node %d: %v", i+1, err)
		}
		for j, m := range nodes {
			if got, err := pleiades(t, "kv", "get", certs, "--addr", m.raft(), "--timeout", "30s", "--value-file", "-", k); err != nil || strings.TrimSpace(got) != v {
				t.Errorf("get %s through node %d = %q, %v; want %s", k, j+1, got, err, v)
			}
		}
	}

	// Node 2 comes back on other ports (same data, same node id).
	moved := nodes[1]
	moved.stop(t)
	moved.offset = 4700
	moved.up(t, seeds(moved))
	// A write through node 1 reaches it: its own applied state (a stale
	// read, served by the first address that answers) holds the value.
	if _, err := pleiades(t, "kv", "put", certs, "--addr", nodes[0].raft(), "--timeout", "30s", "after-move", "found"); err != nil {
		t.Fatal(err)
	}
	eventually.NoError(t, 60*time.Second, "node 2 applies a write at its new address", func() error {
		got, err := pleiades(t, "kv", "get", certs, "--addr", moved.raft(), "--consistency", "stale", "--timeout", "5s", "--value-file", "-", "after-move")
		if err != nil {
			return err
		}
		if strings.TrimSpace(got) != "found" {
			return fmt.Errorf("stale read on node 2 = %q", got)
		}
		return nil
	})
	// Gossip lists it at its new address.
	out, err = pleiades(t, "members", certs, "--addr", nodes[0].gossip(), "--output", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, moved.gossip()) {
		t.Errorf("members through node 1 lack node 2's new gossip address %s: %s", moved.gossip(), out)
	}
	// Writes through it commit: its peers reach it at the new address.
	if _, err := pleiades(t, "kv", "put", certs, "--addr", moved.raft(), "--timeout", "30s", "through-moved", "ok"); err != nil {
		t.Fatalf("put through node 2 at its new address: %v", err)
	}
	for _, n := range []*hostNode{nodes[0], nodes[2]} {
		if n.proc.cmd.ProcessState != nil {
			t.Errorf("node at offset %d exited", n.offset)
		}
	}
}
