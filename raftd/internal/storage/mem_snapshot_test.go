package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func keysOf(kvs []KV) string {
	var b strings.Builder
	for _, kv := range kvs {
		b.Write(kv.Key)
	}
	return b.String()
}

func TestMemSnapshotStream(t *testing.T) {
	ctx := context.Background()
	m := NewMem()
	var ops []Op
	for i := range 6 {
		ops = append(ops, Put(Data, fmt.Appendf(nil, "k%d", i), []byte("vv")))
	}
	if err := m.Write(ctx, ops, false); err != nil {
		t.Fatal(err)
	}
	snap, err := m.OpenSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release(ctx)
	// Later writes are not seen by the snapshot.
	if err := m.Write(ctx, []Op{Put(Data, []byte("k1"), []byte("new")), Delete(Data, []byte("k2"))}, false); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := snap.Get(ctx, Data, []byte("k1")); err != nil || !ok || string(v) != "vv" {
		t.Fatalf("snapshot k1 = %q, %v, %v", v, ok, err)
	}
	for _, tt := range []struct {
		start, end string
		chunk      int
		want       []string
	}{
		{"", "", 0, []string{"k0k1k2k3k4k5"}},
		{"k1", "k4", 8, []string{"k1k2", "k3"}},
		{"k4", "", 1, []string{"k4", "k5"}},
		{"x", "", 1, nil},
	} {
		var end []byte
		if tt.end != "" {
			end = []byte(tt.end)
		}
		var got []string
		if err := snap.StreamRange(ctx, Data, []byte(tt.start), end, tt.chunk, func(kvs []KV) error {
			got = append(got, keysOf(kvs))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("stream [%q, %q) chunk %d = %q, want %q", tt.start, tt.end, tt.chunk, got, tt.want)
		}
	}
	stop := errors.New("stop")
	if err := snap.StreamRange(ctx, Data, nil, nil, 1, func([]KV) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("stream with failing fn = %v", err)
	}
}

func TestMemIngest(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		start, end string
		add        []string
		abort      bool
		failWrites bool
		wantAddErr bool
		wantErr    bool
		want       string // keys after Finish (or Abort) and a crash
	}{
		{name: "replace", start: "b", end: "d", add: []string{"b1", "c9"}, want: "ab1c9de"},
		{name: "empty", start: "b", end: "d", want: "ade"},
		{name: "unbounded", start: "c", add: []string{"x"}, want: "abx"},
		{name: "abort", start: "b", end: "d", add: []string{"b1"}, abort: true, want: "abcde"},
		{name: "out of order", start: "a", end: "z", add: []string{"c", "b"}, wantAddErr: true, want: "abcde"},
		{name: "outside span", start: "b", end: "d", add: []string{"d"}, wantAddErr: true, want: "abcde"},
		{name: "failed write", start: "b", end: "d", add: []string{"b1"}, failWrites: true, wantErr: true, want: "abcde"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMem()
			var ops []Op
			for _, k := range []string{"a", "b", "c", "d", "e"} {
				ops = append(ops, Put(Data, []byte(k), []byte("v")))
			}
			if err := m.Write(ctx, ops, true); err != nil {
				t.Fatal(err)
			}
			var end []byte
			if tt.end != "" {
				end = []byte(tt.end)
			}
			in, err := m.IngestRange(ctx, Data, []byte(tt.start), end)
			if err != nil {
				t.Fatal(err)
			}
			addErr := false
			for _, k := range tt.add {
				if err := in.Add(ctx, KV{Key: []byte(k), Value: []byte("n")}); err != nil {
					addErr = true
					break
				}
			}
			if addErr != tt.wantAddErr {
				t.Fatalf("add error = %v, want %v", addErr, tt.wantAddErr)
			}
			if addErr || tt.abort {
				if err := in.Abort(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				if tt.failWrites {
					m.FailWrites(errors.New("fail"))
				}
				// Nothing is visible before Finish.
				if kvs, _ := m.Scan(ctx, Data, nil, nil, ScanOptions{}); keysOf(kvs) != "abcde" {
					t.Fatalf("before Finish: %q", keysOf(kvs))
				}
				if err := in.Finish(ctx); (err != nil) != tt.wantErr {
					t.Fatalf("Finish = %v, want error %v", err, tt.wantErr)
				}
				m.FailWrites(nil)
			}
			m.Crash() // Finish is durable
			kvs, err := m.Scan(ctx, Data, nil, nil, ScanOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := keysOf(kvs); got != tt.want {
				t.Errorf("after ingest: %q, want %q", got, tt.want)
			}
		})
	}
}
