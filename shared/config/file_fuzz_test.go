package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile feeds arbitrary bytes to the --config loader as YAML and
// as TOML: it must return values or an error naming the config flag, never
// panic, and only ever return known keys.
func FuzzConfigFile(f *testing.F) {
	f.Add([]byte("data-dir: /x\nnode-id: 3\npeers: [a, b]\n"), false)
	f.Add([]byte("data-dir = \"/x\"\nnode-id = 3\n"), true)
	f.Add([]byte("bogus: 1\n"), false)
	f.Add([]byte("[table]\nk = 1\n"), true)
	f.Add([]byte("data-dir: [\n"), false)
	known := map[string]bool{"data-dir": true, "node-id": true, "peers": true, "config": true}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, isTOML bool) {
		name := "c.yaml"
		if isTOML {
			name = "c.toml"
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		values, err := loadFile(p, known)
		if err != nil {
			return
		}
		for k, v := range values {
			if !known[k] || k == FlagConfig {
				t.Fatalf("loadFile returned unknown key %q", k)
			}
			_, _ = fileStrings(v)
		}
	})
}
