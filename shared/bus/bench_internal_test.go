package bus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// BenchmarkTCPThreshold measures unary calls of sizes up to 64 KiB with
// every request on QUIC's calls stream ("quic", tcpMin 64 KiB) and every
// request over TCP ("tcp", tcpMin 0): the threshold (tcpCallMin) belongs
// where TCP starts to win.
//
//	go test ./bus/ -run '^$' -bench BenchmarkTCPThreshold -benchtime 2s
func BenchmarkTCPThreshold(b *testing.B) {
	ca, err := tlsutil.NewTestCA()
	if err != nil {
		b.Fatal(err)
	}
	newBench := func(name string) *Bus {
		tc, err := ca.Config(name)
		if err != nil {
			b.Fatal(err)
		}
		bb, err := New(Config{ListenAddr: "127.0.0.1:0", TLS: tc}, Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = bb.Stop(context.Background()) })
		return bb
	}
	srv := newBench("srv")
	HandleUnary(srv, wire.ProtoKV, "Echo", func(_ context.Context, r *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) { return r, nil })
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		b.Fatal(err)
	}
	addr := srv.Addr().String()
	cli := map[string]*Bus{"quic": newBench("cli"), "tcp": newBench("cli")}
	cli["quic"].tcpMin, cli["tcp"].tcpMin = maxCallsRequest, 0
	for _, c := range cli {
		if err := c.Start(ctx); err != nil {
			b.Fatal(err)
		}
	}
	for _, size := range []int{4 << 10, 16 << 10, 32 << 10, 60 << 10} {
		for _, conc := range []int{1, 64} {
			for _, via := range []string{"quic", "tcp"} {
				b.Run(fmt.Sprintf("%s/size=%d/conc=%d", via, size, conc), func(b *testing.B) {
					c := cli[via]
					req := wrapperspb.Bytes(make([]byte, size))
					if err := c.Call(ctx, addr, wire.ProtoKV, "Echo", req, &wrapperspb.BytesValue{}); err != nil {
						b.Fatal(err)
					}
					var next atomic.Int64
					b.SetBytes(int64(2 * size))
					b.ResetTimer()
					var wg sync.WaitGroup
					for range conc {
						wg.Go(func() {
							var resp wrapperspb.BytesValue
							for next.Add(1) <= int64(b.N) {
								if err := c.Call(ctx, addr, wire.ProtoKV, "Echo", req, &resp); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
				})
			}
		}
	}
}
