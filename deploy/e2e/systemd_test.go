package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnitsMatchDaemons: every flag a unit's ExecStart passes, and
// every PLEIADES_* setting of pleiades.env, is one a daemon has (its
// --help lists it), so the units start the daemons they name.
func TestSystemdUnitsMatchDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the built daemons")
	}
	help := map[string]string{}
	for _, d := range daemons {
		out, err := exec.Command(filepath.Join(binDir, d), "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --help: %v", d, err)
		}
		help[d] = string(out)
	}
	flag := regexp.MustCompile(`^--[a-z-]+$`)
	for _, d := range daemons {
		f, err := os.Open(filepath.Join("..", "systemd", "pleiades-"+d+".service"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "ExecStart=")
			if !ok {
				continue
			}
			for _, w := range strings.Fields(line)[1:] {
				if flag.MatchString(w) && !strings.Contains(help[d], w+" ") {
					t.Errorf("pleiades-%s.service passes %s, which %s --help does not list", d, w, d)
				}
			}
		}
		f.Close()
	}
	env, err := os.ReadFile(filepath.Join("..", "systemd", "pleiades.env"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(env), "\n") {
		name, _, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(name, "PLEIADES_") {
			continue
		}
		found := false
		for _, h := range help {
			found = found || strings.Contains(h, "$"+name)
		}
		if !found {
			t.Errorf("pleiades.env sets %s, which no daemon reads", name)
		}
	}
}
