package clockd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// BoundStore persists the wall-time upper bound: a wall time (Unix ns)
// above every timestamp clockd has handed out. Its home is the `local`
// column family of the node's stored (StoreBound); FileBound keeps it in
// clockd's data directory when no stored address is configured.
type BoundStore interface {
	// LoadBound returns the persisted bound, 0 if none was ever saved.
	LoadBound(ctx context.Context) (int64, error)
	// SaveBound durably replaces the bound.
	SaveBound(ctx context.Context, wallNs int64) error
}

// BoundKey is the key of the wall-time bound in stored's `local` column
// family; its value is 8 big-endian bytes, as in the bound file.
const BoundKey = "clockd/wall-bound"

// StoreBound keeps the bound in the node's stored: key BoundKey of the
// `local` column family, written with a synced reserve write (one that
// goes through on a full disk).
type StoreBound struct {
	c      *storeclient.Client
	legacy BoundStore
}

// NewStoreBound returns a StoreBound calling the stored of c. legacy, if
// not nil, is where an earlier run may have kept the bound (the FileBound
// of a node that ran without stored): LoadBound answers the higher of the
// two, so moving the bound into stored keeps restarts monotonic. Only
// stored is written.
func NewStoreBound(c *storeclient.Client, legacy BoundStore) *StoreBound {
	return &StoreBound{c: c, legacy: legacy}
}

// LoadBound implements BoundStore.
func (s *StoreBound) LoadBound(ctx context.Context) (int64, error) {
	var old int64
	if s.legacy != nil {
		b, err := s.legacy.LoadBound(ctx)
		if err != nil {
			return 0, err
		}
		old = b
	}
	v, found, err := s.c.Get(ctx, storeclient.Local, []byte(BoundKey))
	if err != nil {
		return 0, fmt.Errorf("clockd: read bound from stored: %w", err)
	}
	if !found {
		return old, nil
	}
	b, err := decodeBound(v)
	if err != nil {
		return 0, fmt.Errorf("%w (stored key %s)", err, BoundKey)
	}
	return max(b, old), nil
}

// SaveBound implements BoundStore.
func (s *StoreBound) SaveBound(ctx context.Context, wallNs int64) error {
	if wallNs < 0 {
		return fmt.Errorf("clockd: negative bound %d", wallNs)
	}
	var b storeclient.Batch
	b.Put(storeclient.Local, []byte(BoundKey), binary.BigEndian.AppendUint64(nil, uint64(wallNs)))
	// A reserve write: the clock must keep going when the disk is full
	// (stored refuses ordinary writes then, and its reserve holds these
	// few bytes a second).
	if _, err := s.c.WriteReserve(ctx, &b, true); err != nil {
		return fmt.Errorf("clockd: save bound in stored: %w", err)
	}
	return nil
}

// boundFileName is the file FileBound keeps the bound in.
const boundFileName = "wall-bound"

// FileBound keeps the bound in dir/wall-bound as 8 big-endian bytes,
// replaced atomically (write, fsync, rename, fsync dir).
type FileBound struct {
	dir string
}

// NewFileBound returns a FileBound in dir, which must exist.
func NewFileBound(dir string) *FileBound { return &FileBound{dir: dir} }

// LoadBound implements BoundStore.
func (f *FileBound) LoadBound(context.Context) (int64, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, boundFileName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("clockd: read bound: %w", err)
	}
	return decodeBound(b)
}

// decodeBound decodes a persisted bound (the file's contents, or the
// value of BoundKey in stored).
func decodeBound(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("clockd: persisted bound has %d bytes, want 8", len(b))
	}
	v := int64(binary.BigEndian.Uint64(b))
	if v < 0 {
		return 0, fmt.Errorf("clockd: negative persisted bound %d", v)
	}
	return v, nil
}

// SaveBound implements BoundStore.
func (f *FileBound) SaveBound(_ context.Context, wallNs int64) error {
	if wallNs < 0 {
		return fmt.Errorf("clockd: negative bound %d", wallNs)
	}
	tmp := filepath.Join(f.dir, boundFileName+".tmp")
	if err := writeSync(tmp, binary.BigEndian.AppendUint64(nil, uint64(wallNs))); err != nil {
		return fmt.Errorf("clockd: save bound: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, boundFileName)); err != nil {
		return fmt.Errorf("clockd: save bound: %w", err)
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return fmt.Errorf("clockd: save bound: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("clockd: save bound: sync dir: %w", err)
	}
	return nil
}

func writeSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
