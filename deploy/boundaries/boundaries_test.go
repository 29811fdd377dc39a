package boundaries

import (
	"bufio"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
)

// repoModule prefixes the import path of every module of the repository.
const repoModule = "github.com/pleiades-db/pleiades/"

// allowed says which repository modules module m may import.
func allowed(m, target string) bool {
	switch {
	case m == "deploy", target == m, target == "shared":
		return true
	}
	return false
}

// root returns the repository's root (this package is deploy/boundaries).
func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// modules lists the module directories of the workspace (go.work's use
// lines), relative to the root.
func modules(t *testing.T, rootDir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(rootDir, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	wf, err := modfile.ParseWork("go.work", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range wf.Use {
		out = append(out, filepath.Clean(u.Path))
	}
	if !slices.Contains(out, "shared") || !slices.Contains(out, "deploy") {
		t.Fatalf("go.work uses %v; want shared and deploy among them", out)
	}
	return out
}

// repoTarget returns the repository module an import path belongs to, or
// "" for other paths.
func repoTarget(path string) string {
	rest, ok := strings.CutPrefix(path, repoModule)
	if !ok {
		return ""
	}
	m, _, _ := strings.Cut(rest, "/")
	return m
}

// violations lists, for module m under dir, every import of a module the
// rules forbid: "file: imports path".
func violations(t *testing.T, dir, m string) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != dir && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if path != dir {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // a module of its own
				}
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if target := repoTarget(p); target != "" && !allowed(m, target) {
				rel, _ := filepath.Rel(filepath.Dir(dir), path)
				out = append(out, rel+": imports "+p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range mf.Require {
		if target := repoTarget(r.Mod.Path + "/"); target != "" && !allowed(m, target) {
			out = append(out, m+"/go.mod: requires "+r.Mod.Path)
		}
	}
	return out
}

// TestImportRules checks the star: shared imports only shared, a daemon
// or services only itself and shared, deploy anything.
func TestImportRules(t *testing.T) {
	r := root(t)
	for _, m := range modules(t, r) {
		for _, v := range violations(t, filepath.Join(r, m), m) {
			t.Errorf("%s (module %s may import only itself and shared; daemons talk over the bus, and only deploy brings modules together)", v, m)
		}
	}
}

// TestPleiadesLinksNoDaemonAndNoCgo lists what the pleiades binary links,
// built as build.sh builds it (CGO_ENABLED=0): every package must resolve
// (a cgo-only package such as grocksdb would not), and none may come from
// a daemon module or a daemon's heavy dependency.
func TestPleiadesLinksNoDaemonAndNoCgo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list over the CLI's dependencies")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skip("no go command to list dependencies with")
		}
	}
	cmd := exec.Command(goBin, "list", "-e", "-deps", "-f", "{{.ImportPath}}\t{{with .Error}}{{.Err}}{{end}}", "./cmd/pleiades")
	cmd.Dir = filepath.Join(root(t), "services")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// NATS clients (nats.go: pleiades events, bench msg) are clients; the
	// server is msgd's engine.
	forbidden := []string{"github.com/linxGnu/grocksdb", "github.com/hashicorp/memberlist", "github.com/nats-io/nats-server/"}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		path, errText, _ := strings.Cut(sc.Text(), "\t")
		n++
		if errText != "" {
			t.Errorf("pleiades without cgo: %s: %s", path, errText)
		}
		if target := repoTarget(path); target != "" && target != "shared" && target != "services" {
			t.Errorf("pleiades links %s, code of the %s module", path, target)
		}
		for _, f := range forbidden {
			if strings.HasPrefix(path, f) {
				t.Errorf("pleiades links %s", path)
			}
		}
		if strings.HasPrefix(path, repoModule+"services/msgd") {
			t.Errorf("pleiades links %s, the msgd daemon", path)
		}
	}
	if n < 50 {
		t.Fatalf("go list printed %d packages; want the CLI's whole dependency graph:\n%s", n, out)
	}
}
