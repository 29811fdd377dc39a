package wire_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestParsePreamble(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		want error
		p    wire.Protocol
	}{
		{"ok", append(wire.AppendPreamble(nil, wire.ProtoGossip), 'x'), nil, wire.ProtoGossip},
		{"empty", nil, wire.ErrTruncated, 0},
		{"short", []byte("PLD"), wire.ErrTruncated, 0},
		{"short bad magic", []byte("GE"), wire.ErrBadMagic, 0},
		{"bad magic", []byte("GET / HTTP/1.1"), wire.ErrBadMagic, 0},
		{"version", []byte{'P', 'L', 'D', 'S', 2, 1}, wire.ErrUnsupportedVersion, 0},
		{"protocol 0", []byte{'P', 'L', 'D', 'S', 1, 0}, wire.ErrUnknownProtocol, 0},
		{"protocol 255", []byte{'P', 'L', 'D', 'S', 1, 255}, wire.ErrUnknownProtocol, 0},
		{"calls", append(wire.AppendPreamble(nil, wire.ProtoCalls), 'x'), nil, wire.ProtoCalls},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, rest, err := wire.ParsePreamble(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if err == nil && (p != c.p || string(rest) != "x") {
				t.Fatalf("p = %v rest = %q", p, rest)
			}
			// ReadPreamble agrees with ParsePreamble.
			rp, rerr := wire.ReadPreamble(bytes.NewReader(c.in))
			if c.name == "empty" {
				if rerr != io.EOF {
					t.Fatalf("ReadPreamble(empty) = %v", rerr)
				}
				return
			}
			if !errors.Is(rerr, c.want) || rp != c.p {
				t.Fatalf("ReadPreamble = %v, %v", rp, rerr)
			}
		})
	}
	for _, p := range wire.Protocols() {
		got, _, err := wire.ParsePreamble(wire.AppendPreamble(nil, p))
		if err != nil || got != p || p.String() == "" {
			t.Fatalf("round trip of %v: %v %v", p, got, err)
		}
	}
	if wire.ProtoCalls.Valid() || wire.ProtoCalls.String() != "calls" {
		t.Fatalf("ProtoCalls: valid %v, name %q; want a named preamble marker, not a daemon protocol", wire.ProtoCalls.Valid(), wire.ProtoCalls.String())
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	w := wire.NewWriter(&buf, 100)
	msgs := []string{"", "a", "hello"}
	for _, m := range msgs {
		if err := w.WriteMessage(wrapperspb.String(m)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WriteFrame(make([]byte, 101)); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("oversized WriteFrame: %v", err)
	}
	if err := w.WriteMessage(wrapperspb.String(string(make([]byte, 200)))); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("oversized WriteMessage: %v", err)
	}
	r := wire.NewReader(&buf, 100)
	for _, m := range msgs {
		var got wrapperspb.StringValue
		if err := r.ReadMessage(&got); err != nil || got.Value != m {
			t.Fatalf("ReadMessage = %q, %v; want %q", got.Value, err, m)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}

	for _, c := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"header", []byte{0, 0}, 10, wire.ErrTruncated},
		{"body", []byte{0, 0, 0, 5, 1, 2}, 10, wire.ErrTruncated},
		{"too large", []byte{0, 0, 0, 11}, 10, wire.ErrFrameTooLarge},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff}, 0, wire.ErrFrameTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := wire.NewReader(bytes.NewReader(c.in), c.max).ReadFrame()
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	var bad bytes.Buffer
	wire.NewWriter(&bad, 0).WriteFrame([]byte{0xff})
	if err := wire.NewReader(&bad, 0).ReadMessage(&wrapperspb.StringValue{}); err == nil {
		t.Fatal("garbage decoded")
	}
}

func FuzzParsePreamble(f *testing.F) {
	f.Add(wire.AppendPreamble(nil, wire.ProtoStore))
	f.Add([]byte("PLDS\x01\x09rest"))
	f.Add([]byte("PLDS\x02\x01"))
	f.Add([]byte("PL"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, rest, err := wire.ParsePreamble(b)
		rp, rerr := wire.ReadPreamble(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, wire.ErrBadMagic) && !errors.Is(err, wire.ErrTruncated) &&
				!errors.Is(err, wire.ErrUnsupportedVersion) && !errors.Is(err, wire.ErrUnknownProtocol) {
				t.Fatalf("untyped error %v", err)
			}
			if rerr == nil {
				t.Fatalf("ReadPreamble accepted what ParsePreamble refused: %v", err)
			}
			return
		}
		if !p.Valid() || len(rest) != len(b)-wire.PreambleLen {
			t.Fatalf("p=%v rest=%d", p, len(rest))
		}
		if !bytes.Equal(wire.AppendPreamble(nil, p), b[:wire.PreambleLen]) {
			t.Fatal("preamble does not round-trip")
		}
		if rerr != nil || rp != p {
			t.Fatalf("ReadPreamble = %v, %v", rp, rerr)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0}, uint16(16))
	f.Add([]byte{0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'd'}, uint16(16))
	f.Add([]byte{0, 0, 0, 200}, uint16(16))
	f.Add([]byte{0, 0, 0, 5, 1}, uint16(16))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, max uint16) {
		r := wire.NewReader(bytes.NewReader(b), int(max))
		var out bytes.Buffer
		w := wire.NewWriter(&out, int(max))
		for {
			body, err := r.ReadFrame()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, wire.ErrTruncated) && !errors.Is(err, wire.ErrFrameTooLarge) {
					t.Fatalf("untyped error %v", err)
				}
				return
			}
			if max > 0 && len(body) > int(max) {
				t.Fatalf("frame of %d bytes over limit %d", len(body), max)
			}
			if err := w.WriteFrame(body); err != nil {
				t.Fatal(err)
			}
			_ = proto.Unmarshal(body, &wrapperspb.BytesValue{})
		}
		// Every well-formed input re-encodes to itself.
		if !bytes.Equal(out.Bytes(), b) {
			t.Fatal("frames do not round-trip")
		}
	})
}
