package bus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/wire"
)

// The envelope messages (buspb.Request, Response, Batch) are encoded and
// decoded by hand with protowire: the payload is marshalled straight into
// the outgoing frame and decoded payloads alias the read buffer, which saves
// a copy of every message on both sides. The byte layout is exactly the
// protobuf encoding of the buspb messages.

const (
	fMethod    = 1 // Request.method, Batch.method
	fDeadline  = 2 // Request.deadline_unix_nanos
	fReqPay    = 3 // Request.payload
	fCode      = 1 // Response.code
	fMessage   = 2 // Response.message
	fHint      = 3 // Response.leader_hint
	fRespPay   = 4 // Response.payload
	fEnd       = 5 // Response.end
	fReason    = 6 // Response.reason
	fDetail    = 8 // Response.detail
	fBatchMsgs = 2 // Batch.messages

	// The fields of calls streams.
	fCallID     = 4 // Request.call_id (fixed64)
	fProtocol   = 5 // Request.protocol
	fCancel     = 6 // Request.cancel
	fRespCallID = 7 // Response.call_id (fixed64)
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 1<<20 {
		return // do not pin large buffers
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// beginFrame reserves a frame header at the end of b and returns b and the
// header's offset.
func beginFrame(b []byte) ([]byte, int) {
	off := len(b)
	return append(b, 0, 0, 0, 0), off
}

// endFrame fills the header reserved at off; it fails if the body exceeds max.
func endFrame(b []byte, off, max int) error {
	n := len(b) - off - wire.FrameHeaderLen
	if n > max {
		return fmt.Errorf("%w: %d bytes, limit %d", wire.ErrFrameTooLarge, n, max)
	}
	binary.BigEndian.PutUint32(b[off:], uint32(n))
	return nil
}

var marshalOpts = proto.MarshalOptions{UseCachedSize: true}

// appendMessage appends m as a length-delimited field num.
func appendMessage(b []byte, num protowire.Number, m proto.Message) ([]byte, error) {
	size := proto.Size(m)
	b = protowire.AppendTag(b, num, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	if size == 0 {
		return b, nil
	}
	start := len(b)
	b, err := marshalOpts.MarshalAppend(b, m)
	if err != nil {
		return b, fmt.Errorf("encode %T: %w", m, err)
	}
	if len(b)-start != size {
		return b, fmt.Errorf("encode %T: size changed during marshal", m)
	}
	return b, nil
}

// appendRequest appends a buspb.Request body.
func appendRequest(b []byte, method string, deadline int64, req proto.Message) ([]byte, error) {
	b = protowire.AppendTag(b, fMethod, protowire.BytesType)
	b = protowire.AppendString(b, method)
	if deadline != 0 {
		b = protowire.AppendTag(b, fDeadline, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(deadline))
	}
	return appendMessage(b, fReqPay, req)
}

// appendCallRequest appends a buspb.Request body for a calls stream, its
// call_id first and zero; it returns b and the offset of the call_id's
// eight bytes, to be filled in with setCallID once the call has its id.
func appendCallRequest(b []byte, p wire.Protocol, method string, deadline int64, req proto.Message) ([]byte, int, error) {
	b = protowire.AppendTag(b, fCallID, protowire.Fixed64Type)
	off := len(b)
	b = protowire.AppendFixed64(b, 0)
	b = protowire.AppendTag(b, fProtocol, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(p))
	b, err := appendRequest(b, method, deadline, req)
	return b, off, err
}

// setCallID fills in the call_id reserved by appendCallRequest at off.
func setCallID(b []byte, off int, id uint64) { binary.LittleEndian.PutUint64(b[off:], id) }

// appendCancel appends a buspb.Request body that cancels call id.
func appendCancel(b []byte, id uint64) []byte {
	b = protowire.AppendTag(b, fCallID, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, id)
	b = protowire.AppendTag(b, fCancel, protowire.VarintType)
	return protowire.AppendVarint(b, 1)
}

// appendCallResponse appends a buspb.Response body answering call id of
// a calls stream.
func appendCallResponse(b []byte, id uint64, e Error, m proto.Message) ([]byte, error) {
	b = protowire.AppendTag(b, fRespCallID, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, id)
	return appendResponse(b, e, m, false)
}

// appendResponse appends a buspb.Response body with the status e (code
// OK: success); m may be nil.
func appendResponse(b []byte, e Error, m proto.Message, end bool) ([]byte, error) {
	if e.Code != CodeOK {
		b = protowire.AppendTag(b, fCode, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Code))
	}
	if e.Message != "" {
		b = protowire.AppendTag(b, fMessage, protowire.BytesType)
		b = protowire.AppendString(b, e.Message)
	}
	if e.LeaderHint != "" {
		b = protowire.AppendTag(b, fHint, protowire.BytesType)
		b = protowire.AppendString(b, e.LeaderHint)
	}
	if m != nil {
		var err error
		if b, err = appendMessage(b, fRespPay, m); err != nil {
			return b, err
		}
	}
	if end {
		b = protowire.AppendTag(b, fEnd, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if e.Reason != "" {
		b = protowire.AppendTag(b, fReason, protowire.BytesType)
		b = protowire.AppendString(b, e.Reason)
	}
	if len(e.Detail) > 0 {
		b = protowire.AppendTag(b, fDetail, protowire.BytesType)
		b = protowire.AppendBytes(b, e.Detail)
	}
	return b, nil
}

// appendBatch appends a buspb.Batch body.
func appendBatch(b []byte, method string, msgs []proto.Message) ([]byte, error) {
	b = protowire.AppendTag(b, fMethod, protowire.BytesType)
	b = protowire.AppendString(b, method)
	for _, m := range msgs {
		var err error
		if b, err = appendMessage(b, fBatchMsgs, m); err != nil {
			return b, err
		}
	}
	return b, nil
}

var errMalformed = errors.New("malformed envelope")

// fields walks the top-level fields of a protobuf message body, calling f
// with each field's number, type, and value (varint or fixed64 in v, bytes
// in data).
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("%w: %v", errMalformed, protowire.ParseError(n))
		}
		b = b[n:]
		if err := f(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

func wrongType(num protowire.Number) error {
	return fmt.Errorf("%w: field %d has the wrong wire type", errMalformed, num)
}

// request is a decoded buspb.Request; payload aliases the frame.
type request struct {
	method   string
	deadline int64
	payload  []byte
	callID   uint64
	protocol uint64 // raw; wire.Protocol when it fits a byte
	cancel   bool
}

// decodeRequest decodes a buspb.Request body.
func decodeRequest(b []byte) (request, error) {
	var r request
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case fMethod:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			r.method = string(data)
		case fDeadline:
			if typ != protowire.VarintType {
				return wrongType(num)
			}
			r.deadline = int64(v)
		case fReqPay:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
			r.payload = data
		case fCallID:
			if typ != protowire.Fixed64Type {
				return wrongType(num)
			}
			r.callID = v
		case fProtocol:
			if typ != protowire.VarintType {
				return wrongType(num)
			}
			r.protocol = uint64(uint32(v))
		case fCancel:
			if typ != protowire.VarintType {
				return wrongType(num)
			}
			r.cancel = v != 0
		}
		return nil
	})
	return r, err
}

// response is a decoded buspb.Response; payload aliases the frame.
type response struct {
	code    Code
	message string
	hint    string
	reason  string
	detail  []byte
	payload []byte
	end     bool
	callID  uint64
}

// decodeResponse decodes a buspb.Response body.
func decodeResponse(b []byte) (response, error) {
	var r response
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		want := protowire.BytesType
		if num == fCode || num == fEnd {
			want = protowire.VarintType
		}
		if num >= fCode && num <= fReason && typ != want {
			return wrongType(num)
		}
		if num == fRespCallID && typ != protowire.Fixed64Type {
			return wrongType(num)
		}
		if num == fDetail && typ != protowire.BytesType {
			return wrongType(num)
		}
		switch num {
		case fCode:
			r.code = Code(int32(v))
		case fMessage:
			r.message = string(data)
		case fHint:
			r.hint = string(data)
		case fReason:
			r.reason = string(data)
		case fDetail:
			r.detail = bytes.Clone(data) // the error outlives the frame
		case fRespPay:
			r.payload = data
		case fEnd:
			r.end = v != 0
		case fRespCallID:
			r.callID = v
		}
		return nil
	})
	return r, err
}

// decodeBatch decodes a buspb.Batch body, appending the messages (which
// alias b) to msgs.
func decodeBatch(b []byte, msgs [][]byte) (string, [][]byte, error) {
	var method string
	err := fields(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case fMethod, fBatchMsgs:
			if typ != protowire.BytesType {
				return wrongType(num)
			}
		}
		switch num {
		case fMethod:
			method = string(data)
		case fBatchMsgs:
			msgs = append(msgs, data)
		}
		return nil
	})
	return method, msgs, err
}

// frameMethod returns the method named by field 1 of a Request or Batch
// body without decoding the rest.
func frameMethod(b []byte) (string, error) {
	var method string
	found := false
	err := fields(b, func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) error {
		if num == fMethod && typ == protowire.BytesType {
			method, found = string(data), true
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%w: no method", errMalformed)
	}
	return method, nil
}

// frameReader reads frames with a buffer from bufPool.
type frameReader struct {
	r   io.Reader
	max int
	hdr [wire.FrameHeaderLen]byte
	buf *[]byte
}

// read returns the next frame's body, valid until the next read or release.
func (fr *frameReader) read() ([]byte, error) {
	n, err := io.ReadFull(fr.r, fr.hdr[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: frame header has %d of %d bytes", wire.ErrTruncated, n, wire.FrameHeaderLen)
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(fr.hdr[:])
	if uint64(size) > uint64(fr.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", wire.ErrFrameTooLarge, size, fr.max)
	}
	if fr.buf == nil {
		fr.buf = getBuf()
	}
	if cap(*fr.buf) < int(size) {
		*fr.buf = make([]byte, size)
	}
	body := (*fr.buf)[:size]
	if n, err := io.ReadFull(fr.r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: frame body has %d of %d bytes", wire.ErrTruncated, n, size)
		}
		return nil, err
	}
	return body, nil
}

func (fr *frameReader) release() {
	if fr.buf != nil {
		putBuf(fr.buf)
		fr.buf = nil
	}
}
