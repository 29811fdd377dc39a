package kvclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// Method names of raftd's client protocol (wire.ProtoKV, messages in
// shared/proto/kvpb).
const (
	MethodGet            = "Get"
	MethodPut            = "Put"
	MethodDelete         = "Delete"
	MethodScan           = "Scan"
	MethodDeleteRange    = "DeleteRange"
	MethodCompareAndSwap = "CompareAndSwap"
	MethodBatch          = "Batch"
	MethodInit           = "Init"
	MethodRanges         = "Ranges"
	MethodDescriptors    = "Descriptors"
)

// Client calls raftd's KV protocol. It is safe for concurrent use.
type Client struct {
	cfg     Config
	bus     *bus.Bus
	ownsBus bool
	cache   *rangeCache
	// next picks the next address round robin.
	next atomic.Uint64
	// closed refuses calls after Close.
	closed atomic.Bool
	// suspects holds nodes whose last attempt timed out, with the time
	// until which they are avoided.
	suspects struct {
		sync.Mutex
		until map[string]time.Time
	}
	// sess numbers the writes (session.go).
	sess sessions
}

// ErrClosed is returned by calls on a closed Client.
var ErrClosed = errors.New("client: closed")

// ErrNoListener is matched (errors.Is) by the error of an operation that
// found nothing listening at any configured address (or at the one it is
// pinned to, for Ranges): every raftd is down, or the addresses are
// wrong. The operation fails at once instead of retrying until its
// deadline (an earlier attempt may still have reached a node before it
// went down). The error also matches bus.ErrUnavailable and carries
// reason bus.ReasonNoListener.
var ErrNoListener = errors.New("no raftd listening")

// ErrNotInitialized is matched (errors.Is) by the error of an operation
// that every configured node refused because the cluster has no ranges
// yet: run Init (`pleiades init`). The error also matches
// bus.ErrUnavailable.
var ErrNotInitialized = errors.New("cluster not initialized")

// notInitialized reports whether err is a node's answer that the cluster
// has no ranges yet (Unavailable with reason kvpb.ReasonNotInitialized).
func notInitialized(err error) bool {
	return bus.CodeOf(err) == bus.CodeUnavailable && bus.ReasonOf(err) == kvpb.ReasonNotInitialized
}

// New validates cfg, starts the client's bus endpoint unless cfg.Bus is
// given (ctx bounds that start only) and returns the client. Close it.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg, bus: cfg.Bus, cache: newRangeCache()}
	c.suspects.until = make(map[string]time.Time)
	c.next.Store(rand.Uint64N(uint64(len(cfg.Addrs))))
	if c.bus != nil {
		return c, nil
	}
	tc := cfg.TLS
	if tc == nil {
		var err error
		if tc, err = tlsutil.LoadFirst(cfg.CertsDir, tlsutil.KindClient, tlsutil.KindAdmin, tlsutil.KindNode); err != nil {
			return nil, fmt.Errorf("client: load certificates from %s: %w", cfg.CertsDir, err)
		}
	}
	b, err := bus.New(bus.Config{ListenAddr: cfg.ListenAddr, TLS: tc}, bus.Deps{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("client: bus: %w", err)
	}
	if err := b.Start(ctx); err != nil {
		return nil, fmt.Errorf("client: start bus: %w", err)
	}
	c.bus, c.ownsBus = b, true
	return c, nil
}

// Close stops the client's own bus endpoint (not a Config.Bus), waiting
// for running calls until ctx ends. Calls after Close fail with ErrClosed.
// Close is idempotent.
func (c *Client) Close(ctx context.Context) error {
	if c.closed.Swap(true) || !c.ownsBus {
		return nil
	}
	return c.bus.Stop(ctx)
}

// Addrs returns the configured raftd addresses.
func (c *Client) Addrs() []string { return append([]string(nil), c.cfg.Addrs...) }

// route says where an operation goes.
type route struct {
	// key routes to the leader of key's range when the cache knows it.
	key []byte
	// pointOp sends no_forward to a known leader, so that a stale cache
	// entry is corrected by the NotLeader hint instead of a forward.
	pointOp bool
	// any sends to any node, round robin (Init, descriptors).
	any bool
	// near sends to the first listed node that is not suspect (stale
	// reads: one node serves them all, with the others as fallback).
	near bool
	// addr pins the call to one node (Ranges), with retries there only.
	addr string
	// slow bounds attempts by SlowAttemptTimeout instead of
	// AttemptTimeout.
	slow bool
	// hedge allows a second attempt on another node after HedgeAfter
	// (idempotent reads only).
	hedge bool
	// w is the write the call makes (its session), or nil.
	w *write
}

// invoke calls method with req until it succeeds, fails with an error not
// worth retrying, MaxAttempts is reached or ctx ends. h, when not nil, is
// req's header; invoke sets its no_forward per attempt.
func (c *Client) invoke(ctx context.Context, method string, r route, h *kvpb.Header, req, resp proto.Message) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := checkLimits(req, c.bus.MaxFrameSize()); err != nil {
		return fmt.Errorf("client: %s: %w", method, err)
	}
	if h != nil && c.cfg.System {
		h.System = true
	}
	var (
		hint     string // leader address from the last NotLeader
		hops     int    // hints followed in a row without backing off
		backoffs int
		avoid    string // address that just failed, skipped once
		lastErr  error
		// uninit holds the nodes that answered "not initialized".
		uninit map[string]bool
		// refused holds the nodes where nothing listens.
		refused map[string]bool
	)
	timeout := c.cfg.AttemptTimeout
	if r.slow {
		timeout = c.cfg.SlowAttemptTimeout
	}
	for attempt := 1; ; attempt++ {
		if r.key != nil && !r.any && r.addr == "" && hint == "" {
			// Before the first attempt and after a failure that cleared
			// the leader: learn the range and its leader (rate limited).
			if _, leader, _ := c.cache.lookup(r.key); leader == "" || c.suspect(leader) {
				c.maybeRefresh(ctx)
			}
		}
		addr, rangeID, noForward := c.pick(r, hint, avoid)
		if h != nil {
			h.NoForward = noForward
			// A point operation names the range (and generation) it was
			// routed by: a node that knows it split or changed answers
			// with the current descriptors instead of serving it.
			h.RangeId, h.Generation = 0, 0
			if r.pointOp && r.key != nil {
				if cr, _, ok := c.cache.lookupRange(r.key); ok {
					h.RangeId, h.Generation = cr.id, cr.generation
				}
			}
		}
		r.w.refresh()
		var err error
		if r.hedge && c.cfg.HedgeAfter > 0 && r.addr == "" {
			var winner string
			winner, err = c.hedgedCall(ctx, addr, method, timeout, req, resp)
			if err == nil && winner != addr {
				// The first node did not answer in time: route around it.
				if rangeID != 0 {
					c.cache.clearLeader(rangeID, addr)
				}
				c.markSuspect(addr)
				return nil
			}
		} else {
			err = c.callOnce(ctx, addr, method, timeout, req, resp)
		}
		if err == nil {
			if noForward && rangeID != 0 {
				c.cache.setLeader(rangeID, addr)
			}
			return nil
		}
		if d, ok := ctx.Deadline(); ok && ctx.Err() == nil && !time.Now().Before(d) {
			// The node's answer that the deadline passed can beat the
			// caller's own timer: wait for it.
			<-ctx.Done()
		}
		if ctx.Err() != nil {
			// The caller's deadline cut this attempt: the error of the
			// previous one, if any, says more about why it took so long.
			if c := bus.CodeOf(err); lastErr == nil || (c != bus.CodeDeadlineExceeded && c != bus.CodeCanceled) {
				lastErr = fmt.Errorf("%s: %w", addr, err)
			}
			return fmt.Errorf("client: %s: %w (last error: %w)", method, ctx.Err(), lastErr)
		}
		lastErr = fmt.Errorf("%s: %w", addr, err)
		code := bus.CodeOf(err)
		if mismatch(err) {
			// The range split or moved: nothing was done. The answer
			// carries the current descriptors; cache them and go again
			// at once (a few times in a row, then with backoff).
			if c.learnMismatch(err) && hops < c.cfg.MaxHintHops {
				hops++
				hint, avoid = "", ""
				continue
			}
		}
		if code == bus.CodeDeadlineExceeded {
			// The attempt's own timeout expired (the caller's context has
			// not): the node may be dead. Avoid it for a while.
			c.markSuspect(addr)
		}
		if !retryable(code) && !mismatch(err) {
			return fmt.Errorf("client: %s at %s: %w", method, addr, err)
		}
		if notInitialized(err) && r.addr == "" {
			if uninit == nil {
				uninit = make(map[string]bool)
			}
			uninit[addr] = true
			if len(uninit) >= len(c.cfg.Addrs) {
				return fmt.Errorf("client: %s: %w: every node says so (run Init): %w", method, ErrNotInitialized, lastErr)
			}
		}
		if bus.ReasonOf(err) == bus.ReasonNoListener {
			// Nothing listens there: the node is down. Route around it,
			// and stop once no configured address listens.
			c.markSuspect(addr)
			if refused == nil {
				refused = make(map[string]bool)
			}
			refused[addr] = true
			if r.addr != "" || len(refused) >= len(c.cfg.Addrs) {
				return fmt.Errorf("client: %s: %w: %w", method, ErrNoListener, lastErr)
			}
		}
		hint, avoid = "", ""
		if code == bus.CodeNotLeader {
			hint = bus.LeaderHint(err)
		}
		// What this attempt taught is recorded even when it was the last
		// one, so that the next operation goes to the new leader.
		if rangeID != 0 {
			if hint != "" {
				c.cache.setLeader(rangeID, hint)
			} else {
				c.cache.clearLeader(rangeID, addr)
			}
		}
		if c.cfg.MaxAttempts > 0 && attempt >= c.cfg.MaxAttempts {
			return fmt.Errorf("client: %s: gave up after %d attempts: %w", method, attempt, lastErr)
		}
		if hint != "" && hint != addr && r.addr == "" && hops < c.cfg.MaxHintHops {
			hops++
			c.cfg.Logger.Debug("client: following leader hint", "method", method, "from", addr, "to", hint)
			continue
		}
		hops, hint = 0, ""
		avoid = addr
		wait := c.backoff(backoffs)
		backoffs++
		c.cfg.Logger.Debug("client: retrying", "method", method, "addr", addr, "code", code.String(), "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: %s: %w (last error: %w)", method, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// callOnce makes one attempt, bounded by timeout.
func (c *Client) callOnce(ctx context.Context, addr, method string, timeout time.Duration, req, resp proto.Message) error {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.bus.Call(actx, addr, wire.ProtoKV, method, req, resp)
}

// hedgedCall makes one attempt at addr and, when it has not answered
// after HedgeAfter, a second one at another node that is not suspect, with
// forwarding allowed; the first success wins and cancels the other. It
// returns the address whose answer is in resp, or addr's error when
// neither succeeded. Both attempts have ended when it returns. Use it for
// idempotent reads only: both attempts may be served.
func (c *Client) hedgedCall(ctx context.Context, addr, method string, timeout time.Duration, req, resp proto.Message) (string, error) {
	actx, cancelA := context.WithTimeout(ctx, timeout)
	defer cancelA()
	bctx, cancelB := context.WithCancel(ctx)
	defer cancelB()
	type result struct {
		addr string
		resp proto.Message
		err  error
	}
	errNoHedge := errors.New("no hedge")
	hedged := make(chan result, 1)
	// The hedge's response is made here: the first call is decoding into
	// resp (Reset included) while the hedge starts.
	hresp := resp.ProtoReflect().New().Interface()
	t := time.AfterFunc(c.cfg.HedgeAfter, func() {
		other := c.roundRobin(addr)
		if other == addr || c.suspect(other) {
			hedged <- result{err: errNoHedge}
			return
		}
		hreq := proto.Clone(req)
		if hr, ok := hreq.(interface{ GetHeader() *kvpb.Header }); ok && hr.GetHeader() != nil {
			hr.GetHeader().NoForward = false
		}
		c.cfg.Logger.Debug("client: hedging", "method", method, "slow", addr, "to", other)
		err := c.callOnce(bctx, other, method, timeout, hreq, hresp)
		hedged <- result{other, hresp, err}
		if err == nil {
			cancelA()
		}
	})
	errA := c.bus.Call(actx, addr, wire.ProtoKV, method, req, resp)
	if t.Stop() {
		return addr, errA // no hedge started
	}
	if errA == nil {
		cancelB()
		<-hedged
		return addr, nil
	}
	if r := <-hedged; r.err == nil {
		proto.Reset(resp)
		proto.Merge(resp, r.resp)
		return r.addr, nil
	}
	return addr, errA
}

// mismatch reports whether err is a node's RangeKeyMismatch: the request
// reached a range that no longer holds its keys, and nothing was done.
func mismatch(err error) bool {
	return bus.CodeOf(err) == bus.CodeFailedPrecondition && bus.ReasonOf(err) == kvpb.ReasonRangeKeyMismatch
}

// learnMismatch installs the descriptors a RangeKeyMismatch carries into
// the range cache (replacing the entries they overlap); it reports
// whether there were any.
func (c *Client) learnMismatch(err error) bool {
	d := bus.DetailOf(err)
	if len(d) == 0 {
		return false
	}
	var resp kvpb.DescriptorsResponse
	if proto.Unmarshal(d, &resp) != nil || len(resp.GetDescriptors()) == 0 {
		return false
	}
	c.cache.install(&resp)
	c.cfg.Logger.Debug("client: range cache refreshed from a range key mismatch", "ranges", len(resp.GetDescriptors()))
	return true
}

// retryable reports whether a failed attempt is worth another: the node is
// not (or no longer) serving, is not the leader, or the attempt timed out
// while the caller's context still allows more.
func retryable(code bus.Code) bool {
	switch code {
	case bus.CodeUnavailable, bus.CodeNotLeader, bus.CodeDeadlineExceeded:
		return true
	}
	return false
}

// pick chooses the next attempt's address, the range it targets (0 when
// unknown) and whether to ask the node not to forward.
func (c *Client) pick(r route, hint, avoid string) (addr string, rangeID uint64, noForward bool) {
	if r.addr != "" {
		return r.addr, 0, false
	}
	if r.near {
		return c.nearest(avoid), 0, false
	}
	if hint != "" && c.suspect(hint) {
		// A node that just timed out is not followed: the hint is likely
		// stale (the old leader died); any node forwards to the new one.
		hint = ""
	}
	if !r.any && r.key != nil {
		id, leader, ok := c.cache.lookup(r.key)
		if ok {
			rangeID = id
		}
		if hint != "" {
			return hint, rangeID, r.pointOp
		}
		if leader != "" && leader != avoid && !c.suspect(leader) {
			return leader, rangeID, r.pointOp
		}
	} else if hint != "" {
		return hint, 0, false
	}
	return c.roundRobin(avoid), rangeID, false
}

// roundRobin returns the next configured address, passing over avoid and
// suspect nodes while there is another; when every other node is suspect
// it returns one of them rather than avoid.
func (c *Client) roundRobin(avoid string) string {
	return c.firstUsable(c.next.Add(1), avoid)
}

// nearest is roundRobin always starting from the first configured
// address: the first that is neither avoid nor suspect.
func (c *Client) nearest(avoid string) string { return c.firstUsable(0, avoid) }

// firstUsable scans the configured addresses from index from (modulo
// their number) for one that is neither avoid nor suspect; failing that,
// the first suspect one other than avoid; failing that, the one at from.
func (c *Client) firstUsable(from uint64, avoid string) string {
	n := uint64(len(c.cfg.Addrs))
	fallback := ""
	for i := range n {
		a := c.cfg.Addrs[(from+i)%n]
		if a == avoid {
			continue
		}
		if !c.suspect(a) {
			return a
		}
		if fallback == "" {
			fallback = a
		}
	}
	if fallback != "" {
		return fallback
	}
	return c.cfg.Addrs[from%n]
}

// markSuspect makes addr suspect for SuspectFor.
func (c *Client) markSuspect(addr string) {
	c.suspects.Lock()
	defer c.suspects.Unlock()
	c.suspects.until[addr] = time.Now().Add(c.cfg.SuspectFor)
	c.cfg.Logger.Debug("client: node suspect after a timed out attempt", "addr", addr, "for", c.cfg.SuspectFor)
}

// suspect reports whether addr is avoided now.
func (c *Client) suspect(addr string) bool {
	c.suspects.Lock()
	defer c.suspects.Unlock()
	until, ok := c.suspects.until[addr]
	if !ok {
		return false
	}
	if time.Now().After(until) {
		delete(c.suspects.until, addr)
		return false
	}
	return true
}

// backoff returns the n-th wait: RetryBackoffMin doubling up to
// RetryBackoffMax, jittered (see package backoff).
func (c *Client) backoff(n int) time.Duration {
	return backoff.Policy{Min: c.cfg.RetryBackoffMin, Max: c.cfg.RetryBackoffMax}.Delay(n)
}

// maybeRefresh reloads the range cache from Descriptors when it is due
// (the cache lacks the key's range or its leader).
// It runs on the calling goroutine; concurrent callers do not wait for it.
func (c *Client) maybeRefresh(ctx context.Context) {
	if !c.cache.beginRefresh(time.Now(), c.cfg.DescriptorsEvery) {
		return
	}
	var resp kvpb.DescriptorsResponse
	addr := c.roundRobin("")
	// Hints for routing, refused when wrong: any node's copy of meta.
	stale := &kvpb.Header{ReadConsistency: kvpb.ReadConsistency_READ_CONSISTENCY_STALE}
	err := c.callOnce(ctx, addr, MethodDescriptors, c.cfg.AttemptTimeout, &kvpb.DescriptorsRequest{Header: stale}, &resp)
	switch {
	case err == nil:
		c.cache.endRefresh(&resp, false)
		c.observeClock(timestamp(resp.GetNow()), true)
	case errors.Is(err, bus.ErrUnimplemented):
		c.cfg.Logger.Debug("client: server lacks Descriptors; following hints only")
		c.cache.endRefresh(nil, true)
		c.descriptorsUnsupported()
	default:
		if bus.CodeOf(err) == bus.CodeDeadlineExceeded && ctx.Err() == nil {
			c.markSuspect(addr)
		}
		c.cfg.Logger.Debug("client: refresh descriptors", "addr", addr, "err", err)
		c.cache.endRefresh(nil, false)
	}
}
