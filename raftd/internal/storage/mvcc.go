package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pleiades-db/pleiades/shared/hlc"
)

// Record envelopes (see the package doc): the first byte tells the kind.
const (
	// recordV1 is the envelope written before versions existed: kind,
	// timestamp, value. Still read; a key written so reports version 1
	// and its write's timestamp as its create timestamp.
	recordV1 = 1
	// recordV2 is a live value: kind, modify timestamp, create timestamp,
	// version count (uvarint), value.
	recordV2 = 2
	// recordTombstone is a deletion, in the versions family only: kind,
	// timestamp.
	recordTombstone = 3
)

// Meta is what a key reports besides its value.
type Meta struct {
	// Mod is the timestamp of the write that made this version.
	Mod hlc.Timestamp
	// Create is the timestamp of the write that created the key: its
	// first write since it was last absent.
	Create hlc.Timestamp
	// Version counts the key's writes since Create, Create's included.
	Version uint64
}

// Next is the Meta of a write at ts over prev (found: the key existed).
func (prev Meta) Next(ts hlc.Timestamp, found bool) Meta {
	if !found {
		return Meta{Mod: ts, Create: ts, Version: 1}
	}
	return Meta{Mod: ts, Create: prev.Create, Version: prev.Version + 1}
}

// EncodeRecord encodes a live value and its Meta: the Data family value
// of the key's latest version, and the Versions family value of each.
func EncodeRecord(m Meta, value []byte) []byte {
	b := make([]byte, 0, 1+2*hlc.EncodedLen+binary.MaxVarintLen64+len(value))
	b = append(b, recordV2)
	b = m.Mod.AppendBytes(b)
	b = m.Create.AppendBytes(b)
	b = binary.AppendUvarint(b, m.Version)
	return append(b, value...)
}

// EncodeTombstone encodes the Versions family value of a deletion at ts.
func EncodeTombstone(ts hlc.Timestamp) []byte {
	return ts.AppendBytes(append(make([]byte, 0, 1+hlc.EncodedLen), recordTombstone))
}

// DecodeRecord decodes a record: a tombstone reports deleted, with only
// Meta.Mod set. The value aliases b.
func DecodeRecord(b []byte) (m Meta, value []byte, deleted bool, err error) {
	if len(b) < 1+hlc.EncodedLen {
		return Meta{}, nil, false, ErrBadEnvelope
	}
	ts, err := hlc.DecodeBytes(b[1 : 1+hlc.EncodedLen])
	if err != nil {
		return Meta{}, nil, false, fmt.Errorf("%w: %w", ErrBadEnvelope, err)
	}
	rest := b[1+hlc.EncodedLen:]
	switch b[0] {
	case recordV1:
		return Meta{Mod: ts, Create: ts, Version: 1}, rest, false, nil
	case recordTombstone:
		if len(rest) != 0 {
			return Meta{}, nil, false, fmt.Errorf("%w: tombstone with %d trailing bytes", ErrBadEnvelope, len(rest))
		}
		return Meta{Mod: ts}, nil, true, nil
	case recordV2:
		if len(rest) < hlc.EncodedLen {
			return Meta{}, nil, false, ErrBadEnvelope
		}
		created, err := hlc.DecodeBytes(rest[:hlc.EncodedLen])
		if err != nil {
			return Meta{}, nil, false, fmt.Errorf("%w: create timestamp: %w", ErrBadEnvelope, err)
		}
		n, k := binary.Uvarint(rest[hlc.EncodedLen:])
		if k <= 0 || n == 0 || k != uvarintLen(n) {
			return Meta{}, nil, false, fmt.Errorf("%w: bad version count", ErrBadEnvelope)
		}
		if ts.Less(created) {
			return Meta{}, nil, false, fmt.Errorf("%w: modified %v before created %v", ErrBadEnvelope, ts, created)
		}
		return Meta{Mod: ts, Create: created, Version: n}, rest[hlc.EncodedLen+k:], false, nil
	}
	return Meta{}, nil, false, fmt.Errorf("%w: kind %d", ErrBadEnvelope, b[0])
}

func uvarintLen(n uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], n)
}

// Versions family keys: the user key escaped (each 0x00 byte becomes
// 0x00 0xff), a terminator 0x00 0x01, and the version's timestamp with
// every bit inverted (see the package doc for why this sorts right).
const (
	escByte    = 0x00
	escEscaped = 0xff
	escTerm    = 0x01
)

// ErrBadVersionKey is returned for keys that are not a VersionKey.
var ErrBadVersionKey = errors.New("storage: bad version key")

// VersionPrefix is the prefix of every VersionKey of key.
func VersionPrefix(key []byte) []byte {
	return appendVersionPrefix(make([]byte, 0, len(key)+2+hlc.EncodedLen+4), key)
}

func appendVersionPrefix(b, key []byte) []byte {
	for _, c := range key {
		if c == escByte {
			b = append(b, escByte, escEscaped)
			continue
		}
		b = append(b, c)
	}
	return append(b, escByte, escTerm)
}

// VersionKey is the Versions family key of key's version at ts. A key's
// versions sort together, newest first.
func VersionKey(key []byte, ts hlc.Timestamp) []byte {
	b := VersionPrefix(key)
	b = binary.BigEndian.AppendUint64(b, ^uint64(ts.WallTime))
	return binary.BigEndian.AppendUint32(b, ^uint32(ts.Logical))
}

// VersionKeyEnd is the end of key's versions: above every VersionKey of
// key, below every one of the keys after it.
func VersionKeyEnd(key []byte) []byte {
	b := VersionPrefix(key)
	b[len(b)-1]++ // 0x00 0x02: above the terminator, below an escaped 0x00
	return b
}

// VersionSpan maps the user key span [start, end) (empty start: the
// beginning; nil or empty end: unbounded) to the span of the Versions
// family holding every version of its keys and no other.
func VersionSpan(start, end []byte) (vstart, vend []byte) {
	if len(start) > 0 {
		vstart = VersionPrefix(start)
	}
	if len(end) > 0 {
		vend = VersionPrefix(end)
	}
	return vstart, vend
}

// DecodeVersionKey returns the user key and timestamp of a VersionKey.
func DecodeVersionKey(b []byte) (key []byte, ts hlc.Timestamp, err error) {
	key = make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != escByte {
			key = append(key, c)
			continue
		}
		if i+1 >= len(b) {
			return nil, hlc.Timestamp{}, fmt.Errorf("%w: %x ends in an escape", ErrBadVersionKey, b)
		}
		i++
		switch b[i] {
		case escEscaped:
			key = append(key, escByte)
		case escTerm:
			rest := b[i+1:]
			if len(rest) != hlc.EncodedLen {
				return nil, hlc.Timestamp{}, fmt.Errorf("%w: %x has %d timestamp bytes", ErrBadVersionKey, b, len(rest))
			}
			ts = hlc.Timestamp{WallTime: int64(^binary.BigEndian.Uint64(rest)), Logical: int32(^binary.BigEndian.Uint32(rest[8:]))}
			if err := ts.Valid(); err != nil {
				return nil, hlc.Timestamp{}, fmt.Errorf("%w: %w", ErrBadVersionKey, err)
			}
			return key, ts, nil
		default:
			return nil, hlc.Timestamp{}, fmt.Errorf("%w: %x has escape 0x00 0x%02x", ErrBadVersionKey, b, b[i])
		}
	}
	return nil, hlc.Timestamp{}, fmt.Errorf("%w: %x has no terminator", ErrBadVersionKey, b)
}

// AppliedStateRange returns the range id of an AppliedStateKey.
func AppliedStateRange(key []byte) (uint64, bool) {
	if len(key) != 10 || key[0] != raftPrefix || key[9] != suffixApplied {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[1:9]), true
}
