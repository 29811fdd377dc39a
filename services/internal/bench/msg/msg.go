// Package msg is the messaging benchmark behind `pleiades bench msg`: one
// NATS publisher and one subscriber, possibly on different servers, with
// fixed-size messages, measured for throughput (as fast as the publisher
// can send) and for latency (one message in flight at a time), and
// JetStream acknowledged publishes on a replicated stream. Serve runs the
// plain nats-server the figures are compared with.
package msg

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options describe one run.
type Options struct {
	// PubURL and SubURL are the servers the publisher and the subscriber
	// connect to.
	PubURL, SubURL string
	// Client are extra options of both connections (credentials, TLS).
	Client []nats.Option
	// Size is the message size in bytes (at least 8). Default 128.
	Size int
	// Count is the number of messages of the throughput phase.
	Count int
	// LatencyCount is the number of one-at-a-time messages of the latency
	// phase.
	LatencyCount int
}

// Result is one core run's figures.
type Result struct {
	Target       string  `json:"target"`
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
	Received     int     `json:"received"`
	LatencyP50Us float64 `json:"latency_p50_us"`
	LatencyP99Us float64 `json:"latency_p99_us"`
	LatencyMaxUs float64 `json:"latency_max_us"`
}

func connect(url, name string, extra []nats.Option) (*nats.Conn, error) {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	return nc, nil
}

// Core runs the throughput phase, then the latency phase.
func Core(ctx context.Context, o Options) (Result, error) {
	if o.Size < 8 {
		return Result{}, errors.New("msg: size must be at least 8 bytes")
	}
	res := Result{Target: o.PubURL + " -> " + o.SubURL}
	pub, err := connect(o.PubURL, "bench-pub", o.Client)
	if err != nil {
		return res, err
	}
	defer pub.Close()
	sub, err := connect(o.SubURL, "bench-sub", o.Client)
	if err != nil {
		return res, err
	}
	defer sub.Close()
	subject := fmt.Sprintf("bench.%d", time.Now().UnixNano())

	var received atomic.Int64
	var last atomic.Int64 // unix nanos of the latest receipt
	total := int64(o.Count)
	done := make(chan struct{})
	latency := make(chan time.Duration, 1)
	var latencyPhase atomic.Bool
	s, err := sub.Subscribe(subject, func(m *nats.Msg) {
		now := time.Now()
		if latencyPhase.Load() {
			latency <- now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(m.Data))))
			return
		}
		if len(m.Data) == 8 { // warm-up probe
			select {
			case latency <- 0:
			default:
			}
			return
		}
		last.Store(now.UnixNano())
		if received.Add(1) == total {
			close(done)
		}
	})
	if err != nil {
		return res, err
	}
	_ = s.SetPendingLimits(-1, -1)
	if err := sub.Flush(); err != nil {
		return res, err
	}
	// Interest travels to the publisher's server asynchronously: probe
	// until a message gets through.
	probe := make([]byte, 8)
	for got := false; !got; {
		if err := pub.Publish(subject, probe); err != nil {
			return res, err
		}
		select {
		case <-latency:
			got = true
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}

	payload := make([]byte, o.Size)
	start := time.Now()
	for range o.Count {
		if err := pub.Publish(subject, payload); err != nil {
			return res, err
		}
	}
	if err := pub.Flush(); err != nil {
		return res, err
	}
	timer := time.NewTimer(time.Minute)
	select {
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	n := received.Load()
	res.Received = int(n)
	if n > 0 {
		secs := time.Unix(0, last.Load()).Sub(start).Seconds()
		res.MsgsPerSec = float64(n) / secs
		res.MBPerSec = float64(n) * float64(o.Size) / secs / 1e6
	}
	if n != total {
		return res, fmt.Errorf("received %d of %d messages", n, total)
	}

	latencyPhase.Store(true)
	lat := make([]time.Duration, 0, o.LatencyCount)
	for range o.LatencyCount {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := pub.Publish(subject, payload); err != nil {
			return res, err
		}
		if err := pub.FlushTimeout(5 * time.Second); err != nil {
			return res, err
		}
		select {
		case d := <-latency:
			lat = append(lat, d)
		case <-time.After(5 * time.Second):
			return res, errors.New("msg: a latency probe was lost")
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))]) / 1e3 }
		res.LatencyP50Us, res.LatencyP99Us, res.LatencyMaxUs = q(0.5), q(0.99), q(1)
	}
	return res, nil
}

// JSResult is one JetStream run's figures.
type JSResult struct {
	Target       string  `json:"target"`
	Replicas     int     `json:"replicas"`
	AckedPerSec  float64 `json:"acked_per_sec"`
	Window       int     `json:"window"`
	SyncPerSec   float64 `json:"sync_acked_per_sec"`
	SyncP99Us    float64 `json:"sync_p99_us"`
	Acknowledged int     `json:"acknowledged"`
}

// JetStream creates a file stream with replicas replicas, publishes count
// messages of size bytes with up to window acknowledgements outstanding,
// then syncCount one at a time, and deletes the stream.
func JetStream(ctx context.Context, url string, client []nats.Option, size, replicas, count, window, syncCount int) (JSResult, error) {
	res := JSResult{Target: url, Replicas: replicas, Window: window}
	nc, err := connect(url, "bench-js", client)
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	name := fmt.Sprintf("BENCH_%d", time.Now().UnixNano())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(sctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Replicas: replicas, Storage: jetstream.FileStorage}); err != nil {
		return res, fmt.Errorf("create an R%d stream: %w", replicas, err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		_ = js.DeleteStream(dctx, name)
	}()
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(window))
	if err != nil {
		return res, err
	}
	payload := make([]byte, size)
	subject := name + ".x"
	start := time.Now()
	for range count {
		if _, err := ajs.PublishAsync(subject, payload); err != nil {
			return res, err
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		return res, errors.New("msg: acknowledgements did not all arrive")
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.AckedPerSec = float64(count) / time.Since(start).Seconds()
	res.Acknowledged = count - ajs.PublishAsyncPending()

	lat := make([]time.Duration, 0, syncCount)
	start = time.Now()
	for range syncCount {
		t := time.Now()
		if _, err := js.Publish(ctx, subject, payload); err != nil {
			return res, err
		}
		lat = append(lat, time.Since(t))
	}
	if syncCount > 0 {
		res.SyncPerSec = float64(syncCount) / time.Since(start).Seconds()
		slices.Sort(lat)
		res.SyncP99Us = float64(lat[int(0.99*float64(len(lat)-1))]) / 1e3
	}
	return res, nil
}
