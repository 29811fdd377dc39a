package bus_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Benchmarks compare the bus with a plain TCP loopback baseline carrying the
// same protobuf messages: a length-prefixed request/response server, one TCP
// connection per concurrent caller (TCP has no multiplexing); "tls" is the
// same over TLS 1.3 with the bus's certificates, to tell the cost of the
// encryption from that of QUIC's packets; "bus-local" is the bus calling
// over the server's local (Unix domain) socket. "bus" sends requests over
// 16 KiB over TCP (the default), "bus-quic" is a caller with TCP off,
// every call on QUIC.
//
//	go test ./bus/ -run '^$' -bench . -benchtime 2s

var benchSizes = []int{64, 4 << 10, 64 << 10}

type caller func(ctx context.Context, req, resp *wrapperspb.BytesValue) error

// runUnary calls call b.N times from conc goroutines and reports the p50
// latency and the call rate.
func runUnary(b *testing.B, conc int, newCaller func() caller, size int) {
	req := wrapperspb.Bytes(make([]byte, size))
	callers := make([]caller, conc)
	for i := range callers {
		callers[i] = newCaller()
	}
	ctx := context.Background()
	// Warm up every caller once (dials, buffers).
	for _, c := range callers {
		if err := c(ctx, req, &wrapperspb.BytesValue{}); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([][]time.Duration, conc)
	var next atomic.Int64
	b.SetBytes(int64(2 * size))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			var resp wrapperspb.BytesValue
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := callers[w](ctx, req, &resp); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
}

func BenchmarkUnary(b *testing.B) {
	srv := newBus(b, "srv")
	echo(srv)
	path := socketPath(b)
	if err := srv.ListenLocal(path); err != nil {
		b.Fatal(err)
	}
	addr := start(b, srv)
	cli := newBus(b, "cli")
	start(b, cli)
	cliQUIC := newBus(b, "cli", func(c *bus.Config) { c.DisableTCP = true })
	start(b, cliQUIC)
	// cliLocal calls srv over its local socket.
	cliLocal := newBus(b, "cli")
	start(b, cliLocal)
	if err := cliLocal.AddLocalPeer(addr, path); err != nil {
		b.Fatal(err)
	}
	tcp := startTCPEcho(b, nil)
	srvTLS := tlsConfig(b, "srv")
	srvTLS.MinVersion = tls.VersionTLS13
	tlsAddr := startTCPEcho(b, srvTLS)
	cliTLS := tlsConfig(b, "cli")
	cliTLS.MinVersion = tls.VersionTLS13

	for _, size := range benchSizes {
		for _, conc := range []int{1, 64} {
			b.Run(fmt.Sprintf("bus/size=%d/conc=%d", size, conc), func(b *testing.B) {
				runUnary(b, conc, func() caller {
					return func(ctx context.Context, req, resp *wrapperspb.BytesValue) error {
						return cli.Call(ctx, addr, wire.ProtoKV, "Echo", req, resp)
					}
				}, size)
			})
			b.Run(fmt.Sprintf("bus-quic/size=%d/conc=%d", size, conc), func(b *testing.B) {
				runUnary(b, conc, func() caller {
					return func(ctx context.Context, req, resp *wrapperspb.BytesValue) error {
						return cliQUIC.Call(ctx, addr, wire.ProtoKV, "Echo", req, resp)
					}
				}, size)
			})
			b.Run(fmt.Sprintf("bus-local/size=%d/conc=%d", size, conc), func(b *testing.B) {
				runUnary(b, conc, func() caller {
					return func(ctx context.Context, req, resp *wrapperspb.BytesValue) error {
						return cliLocal.Call(ctx, addr, wire.ProtoKV, "Echo", req, resp)
					}
				}, size)
			})
			b.Run(fmt.Sprintf("tcp/size=%d/conc=%d", size, conc), func(b *testing.B) {
				var conns []net.Conn
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				runUnary(b, conc, func() caller {
					c, err := net.Dial("tcp", tcp)
					if err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
					return tcpCaller(c)
				}, size)
			})
			b.Run(fmt.Sprintf("tls/size=%d/conc=%d", size, conc), func(b *testing.B) {
				var conns []net.Conn
				defer func() {
					for _, c := range conns {
						c.Close()
					}
				}()
				runUnary(b, conc, func() caller {
					c, err := tls.Dial("tcp", tlsAddr, cliTLS)
					if err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
					return tcpCaller(c)
				}, size)
			})
		}
	}
}

// tcpCaller sends one length-prefixed request on c and reads the answer.
func tcpCaller(c net.Conn) caller {
	r := bufio.NewReader(c)
	var out, in []byte
	return func(ctx context.Context, req, resp *wrapperspb.BytesValue) error {
		var err error
		out, err = proto.MarshalOptions{}.MarshalAppend(append(out[:0], 0, 0, 0, 0), req)
		if err != nil {
			return err
		}
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		if _, err := c.Write(out); err != nil {
			return err
		}
		in, err = readTCPFrame(r, in)
		if err != nil {
			return err
		}
		return proto.Unmarshal(in, resp)
	}
}

func readTCPFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > wire.DefaultMaxFrameSize {
		return nil, wire.ErrFrameTooLarge
	}
	if uint32(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// startTCPEcho serves the echo method over TCP (over TLS with a non-nil
// tc): each request frame is unmarshalled and the message marshalled back,
// like the bus handler.
func startTCPEcho(b *testing.B, tc *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				var in, out []byte
				for {
					var err error
					if in, err = readTCPFrame(r, in); err != nil {
						return
					}
					var m wrapperspb.BytesValue
					if err := proto.Unmarshal(in, &m); err != nil {
						return
					}
					out, _ = proto.MarshalOptions{}.MarshalAppend(append(out[:0], 0, 0, 0, 0), &m)
					binary.BigEndian.PutUint32(out, uint32(len(out)-4))
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String()
}

// BenchmarkBatch measures one-way throughput: batches of 16 messages of
// 64 bytes, on the bus (SendBatch) and as frames on one TCP connection.
func BenchmarkBatch(b *testing.B) {
	const per = 16
	msgs := make([]proto.Message, per)
	for i := range msgs {
		msgs[i] = wrapperspb.Bytes(make([]byte, 64))
	}

	b.Run("bus", func(b *testing.B) {
		srv := newBus(b, "srv")
		var got atomic.Int64
		bus.HandleBatch(srv, wire.ProtoRaft, "Msgs", func(ctx context.Context, from bus.Peer, batch []*wrapperspb.BytesValue) {
			got.Add(int64(len(batch)))
		})
		addr := start(b, srv)
		cli := newBus(b, "cli")
		start(b, cli)
		ctx := context.Background()
		b.ResetTimer()
		t0 := time.Now()
		for range b.N {
			if err := cli.SendBatch(ctx, addr, wire.ProtoRaft, "Msgs", msgs...); err != nil {
				b.Fatal(err)
			}
		}
		for got.Load() < int64(b.N*per) {
			time.Sleep(50 * time.Microsecond)
		}
		b.ReportMetric(float64(b.N*per)/time.Since(t0).Seconds(), "msgs/s")
	})

	b.Run("tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		var got atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			r := bufio.NewReader(c)
			var in []byte
			for {
				if in, err = readTCPFrame(r, in); err != nil {
					return
				}
				// A frame holds per length-prefixed messages.
				var n int64
				for rest := in; len(rest) >= 4; n++ {
					l := binary.BigEndian.Uint32(rest)
					var m wrapperspb.BytesValue
					if err := proto.Unmarshal(rest[4:4+l], &m); err != nil {
						return
					}
					rest = rest[4+l:]
				}
				got.Add(n)
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		var out []byte
		b.ResetTimer()
		t0 := time.Now()
		for range b.N {
			out = append(out[:0], 0, 0, 0, 0)
			for _, m := range msgs {
				off := len(out)
				out, _ = proto.MarshalOptions{}.MarshalAppend(append(out, 0, 0, 0, 0), m)
				binary.BigEndian.PutUint32(out[off:], uint32(len(out)-off-4))
			}
			binary.BigEndian.PutUint32(out, uint32(len(out)-4))
			if _, err := c.Write(out); err != nil {
				b.Fatal(err)
			}
		}
		for got.Load() < int64(b.N*per) {
			time.Sleep(50 * time.Microsecond)
		}
		b.ReportMetric(float64(b.N*per)/time.Since(t0).Seconds(), "msgs/s")
		c.Close()
		<-done
	})
}
