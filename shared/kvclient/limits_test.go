package kvclient_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// TestLimitsCheckedBeforeSending: a key or value over the KV's limits gets
// one InvalidArgument naming the limit, whatever its size (a 17 MiB value
// used to fail as a bus frame error, a 16 MiB one with the server's
// refusal), and nothing reaches the cluster; a value at the limit passes.
func TestLimitsCheckedBeforeSending(t *testing.T) {
	fc := kvclienttest.Start(t, kvclienttest.Options{})
	c := newClient(t, fc, nil)
	big := func(n int) []byte { return bytes.Repeat([]byte{'v'}, n) }
	for _, tt := range []struct {
		name string
		call func() error
		want string
	}{
		{"9 MiB value", func() error { _, err := c.Put(ctxT(t), []byte("a"), big(9<<20)); return err }, "value of 9437184 bytes (9 MiB) exceeds the limit of 8 MiB"},
		{"16 MiB value", func() error { _, err := c.Put(ctxT(t), []byte("a"), big(16<<20)); return err }, "value of 16777216 bytes (16 MiB) exceeds the limit of 8 MiB"},
		{"17 MiB value", func() error { _, err := c.Put(ctxT(t), []byte("a"), big(17<<20)); return err }, "value of 17825792 bytes (17 MiB) exceeds the limit of 8 MiB"},
		{"long key", func() error { _, _, err := c.Get(ctxT(t), big(kvpb.MaxKeyBytes+1)); return err }, "key of 65537 bytes (64 KiB) exceeds the limit of 64 KiB"},
		{"CAS new value", func() error {
			_, err := c.CompareAndSwap(ctxT(t), kvclient.CAS{Key: []byte("a"), ExpectAbsent: true, NewValue: big(9 << 20)})
			return err
		}, "value of 9437184 bytes"},
		{"batch op", func() error {
			_, err := c.Batch(ctxT(t), kvclient.NewBatch().Put([]byte("a"), []byte("1")).Put([]byte("b"), big(9<<20)))
			return err
		}, "operation 1: value of 9437184 bytes"},
		{"batch over a frame", func() error {
			_, err := c.Batch(ctxT(t), kvclient.NewBatch().Put([]byte("a"), big(7<<20)).Put([]byte("b"), big(7<<20)).Put([]byte("c"), big(7<<20)))
			return err
		}, "exceeds the bus frame limit of 16 MiB"},
	} {
		err := tt.call()
		if !errors.Is(err, bus.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want InvalidArgument with %q", tt.name, err, tt.want)
		}
	}
	for _, m := range []string{kvclient.MethodPut, kvclient.MethodGet, kvclient.MethodCompareAndSwap, kvclient.MethodBatch} {
		if n := fc.Calls(0, m) + fc.Calls(1, m) + fc.Calls(2, m); n != 0 {
			t.Errorf("%d %s calls reached the cluster; want none", n, m)
		}
	}
	if _, err := c.Put(ctxT(t), []byte("a"), big(kvpb.MaxValueBytes)); err != nil {
		t.Errorf("Put of a value at the limit: %v", err)
	}
}
