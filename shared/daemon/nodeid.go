package daemon

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// NodeIDFile is the name of the node id file in the data dir.
const NodeIDFile = "node-id"

// LoadOrCreateNodeID returns the node id recorded in dataDir/node-id. When
// the file is missing it records want, or a random non-zero id if want is
// 0. When the file exists and want is non-zero, they must agree. Several
// processes may call it at once for the same dataDir: exactly one id wins
// and all of them return it.
func LoadOrCreateNodeID(dataDir string, want uint64) (uint64, error) {
	path := filepath.Join(dataDir, NodeIDFile)
	id, err := readNodeID(path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		id, err = createNodeID(dataDir, path, want)
		if err != nil {
			return 0, err
		}
	default:
		return 0, err
	}
	if want != 0 && id != want {
		return 0, fmt.Errorf("node id %d differs from %d recorded in %s", want, id, path)
	}
	return id, nil
}

func readNodeID(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	id, err := ParseNodeID(b)
	if err != nil {
		return 0, fmt.Errorf("node id file %s: %w", path, err)
	}
	return id, nil
}

// ParseNodeID parses the content of a node id file: a non-zero decimal
// uint64, optionally surrounded by white space.
func ParseNodeID(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 || strconv.FormatUint(id, 10) != s {
		return 0, fmt.Errorf("want a non-zero decimal uint64, have %q", b)
	}
	return id, nil
}

// createNodeID writes the id to a temporary file and hard-links it to
// path, which fails if another process linked first; the file at path is
// then complete whoever won, and is read back.
func createNodeID(dataDir, path string, want uint64) (uint64, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return 0, fmt.Errorf("create data dir: %w", err)
	}
	id := want
	for id == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("random node id: %w", err)
		}
		id = binary.BigEndian.Uint64(b[:]) >> 1 // keep ids below 2^63 for tools that parse int64
	}
	tmp, err := os.CreateTemp(dataDir, ".node-id-*")
	if err != nil {
		return 0, fmt.Errorf("create node id: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", id); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("write node id: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("chmod node id: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("sync node id: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("close node id: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, fmt.Errorf("install node id: %w", err)
	}
	return readNodeID(path)
}
