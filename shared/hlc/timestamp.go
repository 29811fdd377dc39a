package hlc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pleiades-db/pleiades/shared/proto/hlcpb"
)

// Timestamp is a hybrid logical clock reading.
type Timestamp struct {
	// WallTime is physical time in nanoseconds since the Unix epoch.
	WallTime int64
	// Logical orders events that share a WallTime.
	Logical int32
}

// EncodedLen is the length of a timestamp's byte encoding.
const EncodedLen = 12

// ErrInvalidTimestamp is returned for malformed or negative timestamps.
var ErrInvalidTimestamp = errors.New("hlc: invalid timestamp")

// Compare returns -1, 0 or +1 as t is before, equal to or after o.
func (t Timestamp) Compare(o Timestamp) int {
	switch {
	case t.WallTime < o.WallTime:
		return -1
	case t.WallTime > o.WallTime:
		return 1
	case t.Logical < o.Logical:
		return -1
	case t.Logical > o.Logical:
		return 1
	}
	return 0
}

// Less reports whether t is before o.
func (t Timestamp) Less(o Timestamp) bool { return t.Compare(o) < 0 }

// IsZero reports whether t is the zero timestamp.
func (t Timestamp) IsZero() bool { return t == Timestamp{} }

// Next returns the smallest timestamp after t.
func (t Timestamp) Next() Timestamp {
	if t.Logical == math.MaxInt32 {
		return Timestamp{WallTime: t.WallTime + 1}
	}
	return Timestamp{WallTime: t.WallTime, Logical: t.Logical + 1}
}

// Valid reports whether t has no negative part.
func (t Timestamp) Valid() error {
	if t.WallTime < 0 || t.Logical < 0 {
		return fmt.Errorf("%w: negative part in %d,%d", ErrInvalidTimestamp, t.WallTime, t.Logical)
	}
	return nil
}

// String formats t as "<seconds>.<nanoseconds>,<logical>".
func (t Timestamp) String() string {
	sec, nsec := t.WallTime/1e9, t.WallTime%1e9
	sign := ""
	if t.WallTime < 0 {
		sign, sec, nsec = "-", -sec, -nsec
	}
	return fmt.Sprintf("%s%d.%09d,%d", sign, sec, nsec, t.Logical)
}

// Parse reads the String form. Negative timestamps are refused.
func Parse(s string) (Timestamp, error) {
	wall, logical, ok := strings.Cut(s, ",")
	if !ok {
		return Timestamp{}, fmt.Errorf("%w: %q lacks the ',logical' part", ErrInvalidTimestamp, s)
	}
	secs, nanos, ok := strings.Cut(wall, ".")
	if !ok || len(nanos) != 9 || secs == "" || !digits(secs) || !digits(nanos) || !digits(logical) || logical == "" {
		return Timestamp{}, fmt.Errorf("%w: %q is not <seconds>.<9 digits>,<logical>", ErrInvalidTimestamp, s)
	}
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || sec > math.MaxInt64/int64(1e9)-1 {
		return Timestamp{}, fmt.Errorf("%w: seconds in %q out of range", ErrInvalidTimestamp, s)
	}
	ns, _ := strconv.ParseInt(nanos, 10, 64)
	l, err := strconv.ParseInt(logical, 10, 32)
	if err != nil {
		return Timestamp{}, fmt.Errorf("%w: logical in %q out of range", ErrInvalidTimestamp, s)
	}
	return Timestamp{WallTime: sec*1e9 + ns, Logical: int32(l)}, nil
}

func digits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// AppendBytes appends t's 12-byte encoding to b: the wall time and the
// logical counter, big-endian. For valid timestamps, bytewise order of the
// encodings equals timestamp order.
func (t Timestamp) AppendBytes(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.WallTime))
	return binary.BigEndian.AppendUint32(b, uint32(t.Logical))
}

// DecodeBytes decodes a 12-byte encoding. It refuses other lengths and
// negative parts.
func DecodeBytes(b []byte) (Timestamp, error) {
	if len(b) != EncodedLen {
		return Timestamp{}, fmt.Errorf("%w: encoding has %d bytes, want %d", ErrInvalidTimestamp, len(b), EncodedLen)
	}
	t := Timestamp{WallTime: int64(binary.BigEndian.Uint64(b)), Logical: int32(binary.BigEndian.Uint32(b[8:]))}
	if err := t.Valid(); err != nil {
		return Timestamp{}, err
	}
	return t, nil
}

// Proto returns t's protobuf form.
func (t Timestamp) Proto() *hlcpb.Timestamp {
	return &hlcpb.Timestamp{WallTime: t.WallTime, Logical: t.Logical}
}

// FromProto converts a protobuf timestamp (nil is the zero timestamp),
// refusing negative parts.
func FromProto(p *hlcpb.Timestamp) (Timestamp, error) {
	t := Timestamp{WallTime: p.GetWallTime(), Logical: p.GetLogical()}
	if err := t.Valid(); err != nil {
		return Timestamp{}, err
	}
	return t, nil
}
