package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// Magic is the four bytes every Pleiades stream and datagram starts with.
const Magic = "PLDS"

// Version is the framing version this build speaks.
const Version byte = 1

// PreambleLen is the length of a stream or datagram preamble in bytes.
const PreambleLen = len(Magic) + 2

// FrameHeaderLen is the length of a frame's length prefix in bytes.
const FrameHeaderLen = 4

// DefaultMaxFrameSize is the largest frame body accepted unless configured
// otherwise: 16 MiB.
const DefaultMaxFrameSize = 16 << 20

// Protocol identifies which daemon protocol a stream or datagram belongs to.
type Protocol byte

// The protocols of the bus. Values are part of the wire format: never
// renumber them.
const (
	ProtoStore    Protocol = 1
	ProtoRaft     Protocol = 2
	ProtoKV       Protocol = 3
	ProtoGossip   Protocol = 4
	ProtoClock    Protocol = 5
	ProtoWorkflow Protocol = 6
	ProtoAdmin    Protocol = 7
	ProtoMsg      Protocol = 8
)

// ProtoCalls marks a calls stream: a long-lived stream that carries many
// unary calls of any protocol, each Request naming its protocol and call.
// It is not a daemon protocol (Valid reports false); a preamble may carry
// it on a stream, and datagrams with it are dropped.
const ProtoCalls Protocol = 0x80

// maxProtocol is the highest protocol id this build knows.
const maxProtocol = ProtoMsg

var protocolNames = [...]string{
	ProtoStore:    "store",
	ProtoRaft:     "raft",
	ProtoKV:       "kv",
	ProtoGossip:   "gossip",
	ProtoClock:    "clock",
	ProtoWorkflow: "workflow",
	ProtoAdmin:    "admin",
	ProtoMsg:      "msg",
}

// String returns the protocol's lower-case name, or "protocol(N)".
func (p Protocol) String() string {
	if p.Valid() {
		return protocolNames[p]
	}
	if p == ProtoCalls {
		return "calls"
	}
	return fmt.Sprintf("protocol(%d)", byte(p))
}

// Valid reports whether p is a protocol this build knows.
func (p Protocol) Valid() bool { return p >= ProtoStore && p <= maxProtocol }

// Protocols returns every known protocol in id order.
func Protocols() []Protocol {
	out := make([]Protocol, 0, maxProtocol)
	for p := ProtoStore; p <= maxProtocol; p++ {
		out = append(out, p)
	}
	return out
}

// Errors returned by the decoders. They are wrapped with detail; use errors.Is.
var (
	// ErrBadMagic means the first bytes were not Magic: not a Pleiades peer.
	ErrBadMagic = errors.New("wire: bad magic")
	// ErrUnsupportedVersion means the peer speaks a framing version this build does not.
	ErrUnsupportedVersion = errors.New("wire: unsupported version")
	// ErrUnknownProtocol means the protocol id is not one this build knows.
	ErrUnknownProtocol = errors.New("wire: unknown protocol")
	// ErrFrameTooLarge means a frame's declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")
	// ErrTruncated means the input ended inside a preamble or frame.
	ErrTruncated = errors.New("wire: truncated")
)

// AppendPreamble appends the preamble for protocol p to b.
func AppendPreamble(b []byte, p Protocol) []byte {
	b = append(b, Magic...)
	return append(b, Version, byte(p))
}

// ParsePreamble decodes a preamble from the start of b and returns the
// protocol (a valid one or ProtoCalls) and the rest of b.
func ParsePreamble(b []byte) (Protocol, []byte, error) {
	if len(b) < PreambleLen {
		if len(b) > 0 && string(b) != Magic[:min(len(b), len(Magic))] {
			return 0, nil, fmt.Errorf("%w: got %q", ErrBadMagic, b[:min(len(b), len(Magic))])
		}
		return 0, nil, fmt.Errorf("%w: preamble has %d of %d bytes", ErrTruncated, len(b), PreambleLen)
	}
	if string(b[:len(Magic)]) != Magic {
		return 0, nil, fmt.Errorf("%w: got %q", ErrBadMagic, b[:len(Magic)])
	}
	if v := b[len(Magic)]; v != Version {
		return 0, nil, fmt.Errorf("%w: %d (this build speaks %d)", ErrUnsupportedVersion, v, Version)
	}
	p := Protocol(b[len(Magic)+1])
	if !p.Valid() && p != ProtoCalls {
		return 0, nil, fmt.Errorf("%w: %d", ErrUnknownProtocol, byte(p))
	}
	return p, b[PreambleLen:], nil
}

// ReadPreamble reads and decodes a preamble from r.
func ReadPreamble(r io.Reader) (Protocol, error) {
	var buf [PreambleLen]byte
	n, err := io.ReadFull(r, buf[:])
	if err != nil {
		if n > 0 || errors.Is(err, io.ErrUnexpectedEOF) {
			// Report a wrong magic before a short read: it is the better diagnosis.
			if _, _, perr := ParsePreamble(buf[:n]); perr != nil && errors.Is(perr, ErrBadMagic) {
				return 0, perr
			}
			return 0, fmt.Errorf("%w: preamble has %d of %d bytes", ErrTruncated, n, PreambleLen)
		}
		return 0, err
	}
	p, _, err := ParsePreamble(buf[:])
	return p, err
}

// WritePreamble writes the preamble for protocol p to w.
func WritePreamble(w io.Writer, p Protocol) error {
	var buf [PreambleLen]byte
	_, err := w.Write(AppendPreamble(buf[:0], p))
	return err
}

// AppendFrame appends body as one frame to b.
func AppendFrame(b, body []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// Reader reads frames from a stream.
type Reader struct {
	r   io.Reader
	max int
	hdr [FrameHeaderLen]byte
	buf []byte
}

// NewReader returns a Reader of r that refuses frames longer than max bytes
// (DefaultMaxFrameSize if max <= 0).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrameSize
	}
	return &Reader{r: r, max: max}
}

// ReadFrame returns the next frame's body. The returned slice is only valid
// until the next call. At a clean end of input, between frames, it returns
// io.EOF; an end inside a frame is ErrTruncated.
func (r *Reader) ReadFrame() ([]byte, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	if err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: frame header has %d of %d bytes", ErrTruncated, n, FrameHeaderLen)
		}
		return nil, err
	}
	size := binary.BigEndian.Uint32(r.hdr[:])
	if uint64(size) > uint64(r.max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, r.max)
	}
	if cap(r.buf) < int(size) {
		r.buf = make([]byte, size)
	}
	body := r.buf[:size]
	if n, err := io.ReadFull(r.r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: frame body has %d of %d bytes", ErrTruncated, n, size)
		}
		return nil, err
	}
	return body, nil
}

// ReadMessage reads the next frame into m.
func (r *Reader) ReadMessage(m proto.Message) error {
	body, err := r.ReadFrame()
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(body, m); err != nil {
		return fmt.Errorf("wire: decode %T: %w", m, err)
	}
	return nil
}

// Writer writes frames to a stream.
type Writer struct {
	w   io.Writer
	max int
	buf []byte
}

// NewWriter returns a Writer to w that refuses to send frames longer than
// max bytes (DefaultMaxFrameSize if max <= 0).
func NewWriter(w io.Writer, max int) *Writer {
	if max <= 0 {
		max = DefaultMaxFrameSize
	}
	return &Writer{w: w, max: max}
}

// WriteFrame writes body as one frame with a single Write call.
func (w *Writer) WriteFrame(body []byte) error {
	if len(body) > w.max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(body), w.max)
	}
	w.buf = AppendFrame(w.buf[:0], body)
	_, err := w.w.Write(w.buf)
	return err
}

// WriteMessage marshals m and writes it as one frame with a single Write call.
func (w *Writer) WriteMessage(m proto.Message) error {
	b, err := proto.MarshalOptions{}.MarshalAppend(append(w.buf[:0], 0, 0, 0, 0), m)
	if err != nil {
		return fmt.Errorf("wire: encode %T: %w", m, err)
	}
	w.buf = b
	n := len(b) - FrameHeaderLen
	if n > w.max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, w.max)
	}
	binary.BigEndian.PutUint32(b, uint32(n))
	_, err = w.w.Write(b)
	return err
}
