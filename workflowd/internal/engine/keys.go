package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/hlc"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
)

// KV is the part of the KV client the engine uses; *kvclient.Client
// (with Config.System set) satisfies it.
type KV interface {
	Get(ctx context.Context, key []byte, opts ...kvclient.ReadOption) (kvclient.Value, bool, error)
	Put(ctx context.Context, key, value []byte) (hlc.Timestamp, error)
	Delete(ctx context.Context, key []byte) (bool, error)
	CompareAndSwap(ctx context.Context, x kvclient.CAS) (kvclient.CASResult, error)
	Batch(ctx context.Context, b *kvclient.Batch) (kvclient.BatchResult, error)
	Scan(ctx context.Context, start, end []byte, opts kvclient.ScanOptions) *kvclient.Iterator
}

// Key layout, all under kvpb.WorkflowPrefix (0x00 "wf/"), so in the meta
// range, so any set of them can change in one atomic Batch:
//
//	i/<id>                         InstanceRecord
//	f/<id>                         the record's revision (8 bytes): its fence
//	run/<id>                       runnable: has work now (or is running)
//	due/<time 8B>/<id>             earliest timer of a parked instance
//	sub/<name>\0<key>\0<id>        a parked instance waits for (name, key)
//	ev/<name>\0<key>\0<time 8B><id 8B>  EventRecord
//	ls/<status 1B>/<id>            InstanceSummary, for List
//	idem/<key>                     instance id started with that key
//	def/<id>\0<version 4B>         DefinitionRecord
//	snap                           written by List and Counts: they read the list index at its timestamp
const (
	nsInstance = "i/"
	nsFence    = "f/"
	nsRun      = "run/"
	nsDue      = "due/"
	nsSub      = "sub/"
	nsEvent    = "ev/"
	nsList     = "ls/"
	nsIdem     = "idem/"
	nsDef      = "def/"
	nsSnap     = "snap"
)

func key(ns string, parts ...[]byte) []byte {
	n := len(kvpb.WorkflowPrefix) + len(ns)
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	k = append(append(k, kvpb.WorkflowPrefix...), ns...)
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// span returns [start, end) of every key beginning with k.
func span(k []byte) ([]byte, []byte) { return k, kvpb.PrefixEnd(k) }

// be64 encodes a time (unix nanos, may be negative) so that byte order is
// time order.
func be64(t int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t)^(1<<63))
	return b[:]
}

func unbe64(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

func instanceKey(id string) []byte { return key(nsInstance, []byte(id)) }
func fenceKey(id string) []byte    { return key(nsFence, []byte(id)) }

func fenceValue(rev uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], rev)
	return b[:]
}

// writeRecord adds to b the write of an instance record of revision rev,
// fenced by a compare-and-swap of its revision key from old (0: the
// instance must not exist). Every write of a record goes through it: any
// concurrent write moves the revision, so the later one fails, and only
// the 8-byte revision, not the whole record, is compared.
func writeRecord(b *kvclient.Batch, id string, old uint64, raw []byte, rev uint64) *kvclient.Batch {
	x := kvclient.CAS{Key: fenceKey(id), NewValue: fenceValue(rev)}
	if old == 0 {
		x.ExpectAbsent = true
	} else {
		x.Expected = fenceValue(old)
	}
	return b.CompareAndSwap(x).Put(instanceKey(id), raw)
}
func runKey(id string) []byte { return key(nsRun, []byte(id)) }
func dueKey(at int64, id string) []byte {
	return key(nsDue, be64(at), []byte(id))
}
func subPrefix(name, k string) []byte {
	return key(nsSub, []byte(name), []byte{0}, []byte(k), []byte{0})
}
func subKey(name, k, id string) []byte { return append(subPrefix(name, k), id...) }
func eventPrefix(name, k string) []byte {
	return key(nsEvent, []byte(name), []byte{0}, []byte(k), []byte{0})
}
func eventKey(name, k string, at int64, eid []byte) []byte {
	return append(append(eventPrefix(name, k), be64(at)...), eid...)
}
func listKey(st workflowpb.Status, id string) []byte {
	return key(nsList, []byte{byte(st), '/'}, []byte(id))
}
func idemKey(k string) []byte { return key(nsIdem, []byte(k)) }
func defPrefix(id string) []byte {
	return key(nsDef, []byte(id), []byte{0})
}
func defKey(id string, version uint32) []byte {
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], version)
	return append(defPrefix(id), v[:]...)
}

// subName joins an event name and key as the record's subscription and
// consumed entries spell them.
func subName(name, k string) string { return name + "\x00" + k }

func splitSub(s string) (name, k string) {
	i := bytes.IndexByte([]byte(s), 0)
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// idFromKey returns the instance id ending key after prefix p.
func idFromKey(k, p []byte) string { return string(k[len(p):]) }

// casApplied resolves a failed or unanswered write of an instance record:
// it is true when the current value is the one we meant to write (an
// attempt whose answer was lost did apply).
func casApplied(cur kvclient.Value, found bool, want []byte) bool {
	return found && bytes.Equal(cur.Value, want)
}

func decodeRecord(b []byte) (*workflowpb.InstanceRecord, error) {
	rec := &workflowpb.InstanceRecord{}
	if err := proto.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("decode instance record: %w", err)
	}
	return rec, nil
}
