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

// OpKind is the kind of a packed write operation.
type OpKind byte

// Kinds of packed write operations (WriteRequest.packed_ops).
const (
	OpPut         OpKind = 1
	OpDelete      OpKind = 2
	OpDeleteRange OpKind = 3
)

// PackedOp is one decoded packed operation. Key and Value alias the
// packed bytes; for a range deletion Key is the start and Value the end.
type PackedOp struct {
	Kind       OpKind
	CF         ColumnFamily
	Key, Value []byte
}

func appendOpHeader(dst []byte, kind OpKind, cf ColumnFamily) []byte {
	dst = append(dst, byte(kind))
	return binary.AppendUvarint(dst, uint64(uint32(cf)))
}

func appendField(dst, f []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(f)))
	return append(dst, f...)
}

// AppendPut appends a packed put of key to value in cf.
func AppendPut(dst []byte, cf ColumnFamily, key, value []byte) []byte {
	return appendField(appendField(appendOpHeader(dst, OpPut, cf), key), value)
}

// AppendDelete appends a packed deletion of key in cf.
func AppendDelete(dst []byte, cf ColumnFamily, key []byte) []byte {
	return appendField(appendOpHeader(dst, OpDelete, cf), key)
}

// AppendDeleteRange appends a packed deletion of [start, end) in cf.
func AppendDeleteRange(dst []byte, cf ColumnFamily, start, end []byte) []byte {
	return appendField(appendField(appendOpHeader(dst, OpDeleteRange, cf), start), end)
}

// NextOp splits the first operation off the packed operations b. It fails
// with ErrPacked on an unknown kind, a column family over 32 bits or a
// truncated field; it does not judge the family, keys or bounds.
func NextOp(b []byte) (op PackedOp, rest []byte, err error) {
	if len(b) == 0 {
		return PackedOp{}, nil, ErrPacked
	}
	op.Kind = OpKind(b[0])
	cf, w := binary.Uvarint(b[1:])
	if w <= 0 || cf > 0xffffffff {
		return PackedOp{}, nil, ErrPacked
	}
	op.CF = ColumnFamily(int32(uint32(cf)))
	b = b[1+w:]
	switch op.Kind {
	case OpPut, OpDeleteRange:
		if op.Key, b, err = nextField(b); err != nil {
			return PackedOp{}, nil, err
		}
		if op.Value, b, err = nextField(b); err != nil {
			return PackedOp{}, nil, err
		}
	case OpDelete:
		if op.Key, b, err = nextField(b); err != nil {
			return PackedOp{}, nil, err
		}
	default:
		return PackedOp{}, nil, ErrPacked
	}
	return op, b, nil
}
