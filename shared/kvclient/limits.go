package kvclient

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// checkLimits refuses, before anything is sent, a request whose key or
// value exceeds the KV's limits (kvpb.MaxKeyBytes, kvpb.MaxValueBytes) or
// that would not fit in one bus frame (maxFrame), with InvalidArgument:
// the server would refuse the first kind the same way, and a request over
// the frame limit would otherwise fail with a frame error that says
// nothing of the limit the caller broke.
func checkLimits(req proto.Message, maxFrame int) error {
	var err error
	switch r := req.(type) {
	case *kvpb.PutRequest:
		err = checkKV(r.GetKey(), r.GetValue())
	case *kvpb.GetRequest:
		err = checkKV(r.GetKey(), nil)
	case *kvpb.DeleteRequest:
		err = checkKV(r.GetKey(), nil)
	case *kvpb.CompareAndSwapRequest:
		err = checkCAS(r)
	case *kvpb.BatchRequest:
		for i, op := range r.GetOps() {
			switch {
			case op.GetPut() != nil:
				err = checkKV(op.GetPut().GetKey(), op.GetPut().GetValue())
			case op.GetDelete() != nil:
				err = checkKV(op.GetDelete().GetKey(), nil)
			case op.GetCas() != nil:
				err = checkCAS(op.GetCas())
			}
			var be *bus.Error
			if errors.As(err, &be) {
				err = bus.Errorf(bus.CodeInvalidArgument, "operation %d: %s", i, be.Message)
				break
			}
		}
	}
	if err != nil {
		return err
	}
	// The frame also holds the envelope; leave it a little room.
	if n := proto.Size(req); maxFrame > 0 && n > maxFrame-1024 {
		return bus.Errorf(bus.CodeInvalidArgument, "request of %d bytes (%s) exceeds the bus frame limit of %s", n, sizeString(n), sizeString(maxFrame))
	}
	return nil
}

func checkCAS(r *kvpb.CompareAndSwapRequest) error {
	if err := checkKV(r.GetKey(), r.GetNewValue()); err != nil {
		return err
	}
	return checkKV(r.GetKey(), r.GetExpectedValue())
}

// checkKV checks one key and value against the KV's limits.
func checkKV(key, value []byte) error {
	switch {
	case len(key) > kvpb.MaxKeyBytes:
		return bus.Errorf(bus.CodeInvalidArgument, "key of %d bytes (%s) exceeds the limit of %s", len(key), sizeString(len(key)), sizeString(kvpb.MaxKeyBytes))
	case len(value) > kvpb.MaxValueBytes:
		return bus.Errorf(bus.CodeInvalidArgument, "value of %d bytes (%s) exceeds the limit of %s", len(value), sizeString(len(value)), sizeString(kvpb.MaxValueBytes))
	}
	return nil
}

// sizeString formats n bytes with a binary unit: 512 B, 64 KiB, 8.5 MiB.
func sizeString(n int) string {
	switch {
	case n >= 1<<20:
		return trimZero(fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)))
	case n >= 1<<10:
		return trimZero(fmt.Sprintf("%.1f KiB", float64(n)/(1<<10)))
	}
	return fmt.Sprintf("%d B", n)
}

// trimZero drops a ".0" before the unit: "8.0 MiB" becomes "8 MiB".
func trimZero(s string) string {
	if i := len(s) - len(" MiB"); i >= 2 && s[i-2:i] == ".0" {
		return s[:i-2] + s[i:]
	}
	return s
}
