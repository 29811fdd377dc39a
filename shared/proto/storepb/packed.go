package storepb

import (
	"encoding/binary"
	"errors"
)

// ErrPacked reports a malformed packed entry list.
var ErrPacked = errors.New("storepb: malformed packed entries")

// AppendPacked appends one entry to a packed list (see store.proto):
// uvarint(len(key)) key uvarint(len(value)) value.
func AppendPacked(dst, key, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// NextPacked splits the first entry off the packed list b. key and value
// alias b (with their capacity cut to their length, so appending to one
// never overwrites the next). It fails with ErrPacked on a truncated or
// overlong length.
func NextPacked(b []byte) (key, value, rest []byte, err error) {
	key, b, err = nextField(b)
	if err != nil {
		return nil, nil, nil, err
	}
	value, b, err = nextField(b)
	if err != nil {
		return nil, nil, nil, err
	}
	return key, value, b, nil
}

func nextField(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, ErrPacked
	}
	end := w + int(n)
	return b[w:end:end], b[end:], nil
}

// CountPacked validates the packed list b and returns its entry count.
func CountPacked(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		var err error
		if _, _, b, err = NextPacked(b); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
