package engine

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/linxGnu/grocksdb"
)

// Ingester builds the replacement of one span in an SST file beside the
// database (the span's deletion, then entries in ascending key order), so
// its size is bounded by the disk, not by memory. Ingest adds the file to
// the database in one step: readers see the span's old entries until then
// and its new ones after, never a mix. An Ingester is not safe for
// concurrent use; Close releases it (and its file) whatever happened.
type Ingester struct {
	e    *Engine
	span Span
	path string
	env  *grocksdb.EnvOptions
	w    *grocksdb.SSTFileWriter
	last []byte
	done bool
}

// ingestDir holds the files of ingests in progress, beside the database
// directory (emptied at Open: a file there belongs to an ingest a crash
// interrupted).
func (e *Engine) ingestDir() string { return ingestDirOf(e.dir) }

func ingestDirOf(dbDir string) string { return dbDir + ".ingest" }

// NewIngester starts the replacement of span (its end is required).
func (e *Engine) NewIngester(span Span) (*Ingester, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.closeMu.RUnlock()
	if err := e.checkSpan("ingest", span, true); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(e.ingestDir(), 0o750); err != nil {
		return nil, fmt.Errorf("engine: ingest: %w", err)
	}
	f, err := os.CreateTemp(e.ingestDir(), "span-*.sst")
	if err != nil {
		return nil, noSpace(fmt.Errorf("engine: ingest: %w", err))
	}
	path := f.Name()
	_ = f.Close()
	in := &Ingester{e: e, span: span, path: path, env: grocksdb.NewDefaultEnvOptions()}
	in.w = grocksdb.NewSSTFileWriter(in.env, e.cfOpts[span.CF])
	if err := in.w.Open(path); err != nil {
		in.Close()
		return nil, fmt.Errorf("engine: ingest: open %s: %w", path, err)
	}
	// Entries of an ingested file all carry one sequence number, above
	// everything in the database: the file's range deletion covers the
	// span's old entries and not the file's own.
	if err := in.w.DeleteRange(span.Start, span.End); err != nil {
		in.Close()
		return nil, fmt.Errorf("engine: ingest: %w", err)
	}
	return in, nil
}

// Put adds an entry; keys must lie in the span and ascend strictly.
func (in *Ingester) Put(key, value []byte) error {
	switch {
	case in.done:
		return invalidf("ingest: already finished")
	case len(key) == 0 || len(key) > in.e.opts.MaxKeyBytes:
		return invalidf("ingest: key of %d bytes (limit %d, not empty)", len(key), in.e.opts.MaxKeyBytes)
	case len(value) > in.e.opts.MaxValueBytes:
		return invalidf("ingest: value of %d bytes exceeds the limit of %d", len(value), in.e.opts.MaxValueBytes)
	case !in.span.Contains(key):
		return invalidf("ingest: key %q outside the span", key)
	case in.last != nil && bytes.Compare(key, in.last) <= 0:
		return invalidf("ingest: key %q not above the previous %q", key, in.last)
	}
	if err := in.w.Put(key, value); err != nil {
		return noSpace(fmt.Errorf("engine: ingest: %w", err))
	}
	in.last = append(in.last[:0], key...)
	return nil
}

// Ingest finishes the file and adds it to the database, replacing the
// span; it returns the sequence number after. The Ingester is spent
// either way.
func (in *Ingester) Ingest() (uint64, error) {
	if in.done {
		return 0, invalidf("ingest: already finished")
	}
	in.done = true
	if err := in.w.Finish(); err != nil {
		return 0, noSpace(fmt.Errorf("engine: ingest: finish %s: %w", in.path, err))
	}
	e := in.e
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.closeMu.RUnlock()
	opts := grocksdb.NewDefaultIngestExternalFileOptions()
	defer opts.Destroy()
	opts.SetMoveFiles(true)
	if err := e.db.IngestExternalFileCF(e.cfs[in.span.CF], []string{in.path}, opts); err != nil {
		return 0, noSpace(fmt.Errorf("engine: ingest %s: %w", in.path, err))
	}
	e.writes.Add(1)
	return e.db.GetLatestSequenceNumber(), nil
}

// Close releases the Ingester and removes its file (an ingested file was
// moved into the database already). It is idempotent.
func (in *Ingester) Close() {
	if in.w != nil {
		in.w.Destroy()
		in.w = nil
	}
	if in.env != nil {
		in.env.Destroy()
		in.env = nil
	}
	in.done = true
	_ = os.Remove(in.path)
}

// clearIngestDir removes what interrupted ingests left.
func clearIngestDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, ent := range ents {
		if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
			return err
		}
	}
	return nil
}
