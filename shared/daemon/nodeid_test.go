package daemon

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestNodeIDCreateAndReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	id, err := LoadOrCreateNodeID(dir, 0)
	if err != nil || id == 0 {
		t.Fatalf("LoadOrCreateNodeID = %d, %v; want a non-zero id", id, err)
	}
	again, err := LoadOrCreateNodeID(dir, 0)
	if err != nil || again != id {
		t.Fatalf("reload = %d, %v; want %d", again, err, id)
	}
	if _, err := LoadOrCreateNodeID(dir, id+1); err == nil {
		t.Errorf("conflicting --node-id accepted")
	}
	if same, err := LoadOrCreateNodeID(dir, id); err != nil || same != id {
		t.Errorf("matching --node-id = %d, %v", same, err)
	}
}

func TestNodeIDExplicit(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadOrCreateNodeID(dir, 77)
	if err != nil || id != 77 {
		t.Fatalf("LoadOrCreateNodeID(77) = %d, %v", id, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, NodeIDFile))
	if err != nil || string(b) != "77\n" {
		t.Errorf("node-id file = %q, %v; want \"77\\n\"", b, err)
	}
}

func TestNodeIDCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, NodeIDFile), []byte("zero\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateNodeID(dir, 0); err == nil {
		t.Error("corrupt node-id file accepted")
	}
}

func TestNodeIDRace(t *testing.T) {
	for range 20 {
		dir := t.TempDir()
		const n = 8
		ids := make([]uint64, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { ids[i], errs[i] = LoadOrCreateNodeID(dir, 0) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || ids[i] != ids[0] {
				t.Fatalf("racer %d: id %d err %v; racer 0 got %d", i, ids[i], errs[i], ids[0])
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Errorf("data dir holds %d entries after the race; want only node-id", len(entries))
		}
	}
}
