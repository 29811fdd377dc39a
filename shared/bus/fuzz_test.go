package bus

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/buspb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// The hand-written envelope codec must agree with the generated buspb code:
// wherever both accept an input, they decode the same field values.

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []*buspb.Request{
		{},
		{Method: "Get"},
		{Method: "Put", DeadlineUnixNanos: 1700000000000000000, Payload: []byte("\x0a\x03key")},
		{Method: "x", DeadlineUnixNanos: -1},
		{CallId: 7, Protocol: 3, Method: "Get", Payload: []byte{1}},
		{CallId: 1 << 63, Cancel: true},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0xff})
	f.Add([]byte{0x12, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeRequest(b)
		if err != nil {
			return
		}
		var want buspb.Request
		if proto.Unmarshal(b, &want) != nil {
			// The generated decoder also checks UTF-8 of strings; ours does not.
			return
		}
		if got.method != want.Method || got.deadline != want.DeadlineUnixNanos || !bytes.Equal(got.payload, want.Payload) ||
			got.callID != want.CallId || got.protocol != uint64(want.Protocol) || got.cancel != want.Cancel {
			t.Fatalf("decodeRequest = %+v, generated = %v", got, &want)
		}
		if m, err := frameMethod(b); err == nil && m != got.method {
			t.Fatalf("frameMethod = %q, want %q", m, got.method)
		}
		enc, err := appendRequest(nil, got.method, got.deadline, &buspb.Batch{})
		if err != nil {
			t.Fatal(err)
		}
		var back buspb.Request
		if err := proto.Unmarshal(enc, &back); err != nil || back.Method != got.method || back.DeadlineUnixNanos != got.deadline {
			t.Fatalf("re-encode: %v %v", &back, err)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, r := range []*buspb.Response{
		{},
		{Code: buspb.Code_NOT_LEADER, LeaderHint: "10.0.0.1:7402", End: true},
		{Code: buspb.Code_NOT_FOUND, Message: "no such key"},
		{Code: buspb.Code_UNAVAILABLE, Message: "cluster not initialized", Reason: "not_initialized"},
		{Payload: []byte{1, 2, 3}},
		{CallId: 42, Code: buspb.Code_CANCELED, Message: "gave up"},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeResponse(b)
		var want buspb.Response
		if err != nil || proto.Unmarshal(b, &want) != nil {
			return
		}
		if got.code != want.Code || got.message != want.Message || got.hint != want.LeaderHint ||
			got.reason != want.Reason || !bytes.Equal(got.payload, want.Payload) || got.end != want.End || got.callID != want.CallId {
			t.Fatalf("decodeResponse = %+v, generated = %v", got, &want)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, r := range []*buspb.Batch{
		{},
		{Method: "Msgs", Messages: [][]byte{{}, {1}, []byte("abc")}},
	} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		method, msgs, err := decodeBatch(b, nil)
		var want buspb.Batch
		if err != nil || proto.Unmarshal(b, &want) != nil {
			return
		}
		if method != want.Method || len(msgs) != len(want.Messages) {
			t.Fatalf("decodeBatch = %q %d, generated = %v", method, len(msgs), &want)
		}
		for i := range msgs {
			if !bytes.Equal(msgs[i], want.Messages[i]) {
				t.Fatalf("message %d differs", i)
			}
		}
	})
}

func TestEnvelopeEncodingMatchesGenerated(t *testing.T) {
	payload := &buspb.Batch{Method: "inner", Messages: [][]byte{[]byte("x")}}
	pb, _ := proto.Marshal(payload)

	b, err := appendRequest(nil, "Get", 42, payload)
	if err != nil {
		t.Fatal(err)
	}
	var req buspb.Request
	if err := proto.Unmarshal(b, &req); err != nil || req.Method != "Get" || req.DeadlineUnixNanos != 42 || !bytes.Equal(req.Payload, pb) {
		t.Fatalf("request: %v %v", &req, err)
	}

	b, err = appendResponse(nil, Error{Code: CodeNotLeader, Message: "msg", LeaderHint: "hint", Reason: "why"}, payload, true)
	if err != nil {
		t.Fatal(err)
	}
	var resp buspb.Response
	if err := proto.Unmarshal(b, &resp); err != nil || resp.Code != CodeNotLeader || resp.Message != "msg" ||
		resp.LeaderHint != "hint" || resp.Reason != "why" || !resp.End || !bytes.Equal(resp.Payload, pb) {
		t.Fatalf("response: %v %v", &resp, err)
	}
	gen, _ := proto.Marshal(&resp)
	r, err := decodeResponse(gen)
	if err != nil || r.code != CodeNotLeader || r.message != "msg" || r.hint != "hint" || r.reason != "why" || !r.end {
		t.Fatalf("decoded generated response: %+v %v", r, err)
	}

	b, off, err := appendCallRequest(nil, wire.ProtoStore, "Write", 43, payload)
	if err != nil {
		t.Fatal(err)
	}
	setCallID(b, off, 1<<40+5)
	req.Reset()
	if err := proto.Unmarshal(b, &req); err != nil || req.CallId != 1<<40+5 || req.Protocol != uint32(wire.ProtoStore) ||
		req.Method != "Write" || req.DeadlineUnixNanos != 43 || req.Cancel || !bytes.Equal(req.Payload, pb) {
		t.Fatalf("call request: %v %v", &req, err)
	}
	req.Reset()
	if err := proto.Unmarshal(appendCancel(nil, 99), &req); err != nil || req.CallId != 99 || !req.Cancel || req.Method != "" {
		t.Fatalf("cancel: %v %v", &req, err)
	}
	b, err = appendCallResponse(nil, 77, Error{Code: CodeUnavailable, Message: "m"}, payload)
	if err != nil {
		t.Fatal(err)
	}
	resp.Reset()
	if err := proto.Unmarshal(b, &resp); err != nil || resp.CallId != 77 || resp.Code != CodeUnavailable || resp.End || !bytes.Equal(resp.Payload, pb) {
		t.Fatalf("call response: %v %v", &resp, err)
	}
	if r, err := decodeResponse(b); err != nil || r.callID != 77 || r.code != CodeUnavailable {
		t.Fatalf("decoded call response: %+v %v", r, err)
	}

	b, err = appendBatch(nil, "M", []proto.Message{payload, &buspb.Batch{}})
	if err != nil {
		t.Fatal(err)
	}
	var batch buspb.Batch
	if err := proto.Unmarshal(b, &batch); err != nil || batch.Method != "M" || len(batch.Messages) != 2 ||
		!bytes.Equal(batch.Messages[0], pb) || len(batch.Messages[1]) != 0 {
		t.Fatalf("batch: %v %v", &batch, err)
	}
}
