package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pleiades-db/pleiades/shared/hlc"
)

// Raft column family layout: 'r' + range id (8 bytes, big-endian) + suffix.
const (
	raftPrefix      = 'r'
	suffixHardState = 'h'
	suffixTruncated = 't'
	suffixApplied   = 'a'
	suffixLog       = 'l'
	suffixSnapshot  = 's'
	suffixSession   = 'c'
	suffixStaged    = 'd'
)

// SessionIDLen is the length of a client session id.
const SessionIDLen = 16

func rangePrefix(rangeID uint64, suffix byte) []byte {
	k := make([]byte, 0, 18)
	k = append(k, raftPrefix)
	k = binary.BigEndian.AppendUint64(k, rangeID)
	return append(k, suffix)
}

// HardStateKey is the raft CF key of a range's raft hard state.
func HardStateKey(rangeID uint64) []byte { return rangePrefix(rangeID, suffixHardState) }

// TruncatedStateKey is the raft CF key of a range's truncated state.
func TruncatedStateKey(rangeID uint64) []byte { return rangePrefix(rangeID, suffixTruncated) }

// AppliedStateKey is the raft CF key of a range's applied state.
func AppliedStateKey(rangeID uint64) []byte { return rangePrefix(rangeID, suffixApplied) }

// SnapshotMarkerKey is the raft CF key of a range's snapshot install in
// progress: present while the range's data span may hold a snapshot that
// its raft and applied state do not describe yet.
func SnapshotMarkerKey(rangeID uint64) []byte { return rangePrefix(rangeID, suffixSnapshot) }

// LogKey is the raft CF key of a range's log entry at index.
func LogKey(rangeID, index uint64) []byte {
	return binary.BigEndian.AppendUint64(rangePrefix(rangeID, suffixLog), index)
}

// LogIndex decodes the index of a LogKey of rangeID.
func LogIndex(rangeID uint64, key []byte) (uint64, error) {
	p := rangePrefix(rangeID, suffixLog)
	if len(key) != len(p)+8 || string(key[:len(p)]) != string(p) {
		return 0, fmt.Errorf("storage: %x is not a log key of range %d", key, rangeID)
	}
	return binary.BigEndian.Uint64(key[len(p):]), nil
}

// SessionKey is the raft CF key of the record of a range's client
// session.
func SessionKey(rangeID uint64, id []byte) []byte { return sessionKey(rangeID, suffixSession, id) }

// StagedSessionKey is SessionKey for the records of a snapshot being
// installed, staged until the install completes.
func StagedSessionKey(rangeID uint64, id []byte) []byte { return sessionKey(rangeID, suffixStaged, id) }

func sessionKey(rangeID uint64, suffix byte, id []byte) []byte {
	k := make([]byte, 0, 10+SessionIDLen)
	k = append(k, raftPrefix)
	k = binary.BigEndian.AppendUint64(k, rangeID)
	return append(append(k, suffix), id...)
}

// SessionSpan is the raft CF span of a range's SessionKeys.
func SessionSpan(rangeID uint64) (start, end []byte) { return suffixSpan(rangeID, suffixSession) }

// StagedSessionSpan is the raft CF span of a range's StagedSessionKeys.
func StagedSessionSpan(rangeID uint64) (start, end []byte) { return suffixSpan(rangeID, suffixStaged) }

func suffixSpan(rangeID uint64, suffix byte) (start, end []byte) {
	return rangePrefix(rangeID, suffix), rangePrefix(rangeID, suffix+1)
}

// ParseSessionKey returns the session id (aliasing key) of a SessionKey
// or StagedSessionKey of rangeID.
func ParseSessionKey(rangeID uint64, key []byte) (id []byte, err error) {
	p := rangePrefix(rangeID, suffixSession)
	if len(key) != len(p)+SessionIDLen || string(key[:len(p)-1]) != string(p[:len(p)-1]) ||
		(key[len(p)-1] != suffixSession && key[len(p)-1] != suffixStaged) {
		return nil, fmt.Errorf("storage: %x is not a session key of range %d", key, rangeID)
	}
	return key[len(p):], nil
}

// RangeRaftSpan is the raft CF span of every key of a range.
func RangeRaftSpan(rangeID uint64) (start, end []byte) {
	s := make([]byte, 0, 9)
	s = append(s, raftPrefix)
	s = binary.BigEndian.AppendUint64(s, rangeID)
	e := make([]byte, 0, 9)
	e = append(e, raftPrefix)
	return s, binary.BigEndian.AppendUint64(e, rangeID+1)
}

// Local column family keys.
var (
	// BootstrapKey holds the cluster bootstrap record of this node.
	BootstrapKey = []byte("bootstrap")
	// IncarnationKey holds the count of raftd runs on this node.
	IncarnationKey = []byte("incarnation")
	replicaPrefix  = []byte("replica/")
)

// ReplicaKey is the local CF key of the descriptor of a replica hosted by
// this node.
func ReplicaKey(rangeID uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), replicaPrefix...), rangeID)
}

// TombstoneKey is the local CF key of the tombstone of a range whose
// replica this node removed (raftmsgpb.Tombstone).
func TombstoneKey(rangeID uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("tombstone/"), rangeID)
}

// ReplicaSpan is the local CF span of every ReplicaKey.
func ReplicaSpan() (start, end []byte) {
	e := append([]byte(nil), replicaPrefix...)
	e[len(e)-1]++
	return append([]byte(nil), replicaPrefix...), e
}

// Data column family: system keys begin with 0x00. The meta range holds
// range descriptors under MetaPrefix + end key.
var MetaPrefix = []byte{0x00, 'm', 'e', 't', 'a', '/'}

// MetaKey is the data key of the descriptor of the range ending at end
// (empty end: the last range, encoded as 0xff so it sorts last).
func MetaKey(end []byte) []byte {
	if len(end) == 0 {
		end = []byte{0xff, 0xff}
	}
	return append(append([]byte(nil), MetaPrefix...), end...)
}

// MetaSpan is the data span of every MetaKey.
func MetaSpan() (start, end []byte) {
	e := append([]byte(nil), MetaPrefix...)
	e[len(e)-1]++
	return append([]byte(nil), MetaPrefix...), e
}

// RangeIDCounterKey is the data key, in the meta range's span but outside
// MetaSpan, of the last range id allocated (8 bytes big-endian in the value
// envelope).
var RangeIDCounterKey = []byte{0x00, 'r', 'a', 'n', 'g', 'e', '-', 'i', 'd'}

// Value envelope (Data family values): see EncodeRecord; EncodeValue
// writes the first version of the envelope, still read.
const envelopeVersion = recordV1

// ErrBadEnvelope is returned for values that are not a valid envelope.
var ErrBadEnvelope = errors.New("storage: bad value envelope")

// EncodeValue wraps a value with the HLC timestamp of its write, in the
// envelope's first version (no create timestamp or version count).
func EncodeValue(ts hlc.Timestamp, value []byte) []byte {
	b := make([]byte, 0, 1+hlc.EncodedLen+len(value))
	b = append(b, envelopeVersion)
	b = ts.AppendBytes(b)
	return append(b, value...)
}

// DecodeValue unwraps a live record (EncodeRecord or EncodeValue): its
// modify timestamp and value, which aliases b.
func DecodeValue(b []byte) (hlc.Timestamp, []byte, error) {
	m, v, deleted, err := DecodeRecord(b)
	if err != nil {
		return hlc.Timestamp{}, nil, err
	}
	if deleted {
		return hlc.Timestamp{}, nil, fmt.Errorf("%w: a tombstone", ErrBadEnvelope)
	}
	return m.Mod, v, nil
}
