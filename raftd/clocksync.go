package raftd

import (
	"context"
	"log/slog"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/clockclient"
)

// clockSyncInterval is how often raftd and the node's clockd exchange HLC
// readings.
const clockSyncInterval = time.Second

// syncClock ties raftd to the node's clockd until Stop:
//
//   - every clockSyncInterval raftd hands its HLC reading to clockd
//     (Update) and folds clockd's answer into its own clock, so the
//     timestamps raftd stamps writes with never fall behind the node's
//     clock authority (which persists a wall-time bound across restarts)
//     and clockd sees what raftd has observed from other nodes;
//   - it follows clockd's health: while clockd reports this node's clock
//     too far from its peers', leader leases are suspended and linearizable
//     reads take a ReadIndex round (a lease's safety assumes the offset
//     bound holds). An unreachable clockd changes nothing: its last verdict
//     stands (initially healthy), since clock health is clockd's to judge.
func (s *Server) syncClock(st *multiraft.Store) {
	cc := clockclient.New(s.d.Bus, s.cfg.ClockAddr)
	s.tasks.Go(func() { s.watchClockHealth(cc, st) })
	t := time.NewTicker(clockSyncInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(s.ctx, clockSyncInterval)
		ts, err := cc.Update(ctx, s.clock.Now())
		cancel()
		if err == nil {
			if _, err := s.clock.Update(ts); err != nil {
				s.log.Warn("clockd's reading is beyond the maximum offset; not folded in", slog.Any("error", err))
			}
		} else {
			s.log.Debug("clockd unreachable for a clock sync", slog.Any("error", err))
		}
		select {
		case <-t.C:
		case <-s.stopc:
			return
		}
	}
}

// watchClockHealth applies clockd's health verdicts to the store's
// leases, resubscribing with backoff when the stream breaks.
func (s *Server) watchClockHealth(cc *clockclient.Client, st *multiraft.Store) {
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	for {
		hs, err := cc.WatchHealth(s.ctx)
		if err == nil {
			retry.Reset()
			for {
				h, err := hs.Recv()
				if err != nil {
					break
				}
				if st.SuspendLeases(!h.GetHealthy()) != !h.GetHealthy() {
					s.log.Warn("clock health changed; leader leases follow it", slog.Bool("healthy", h.GetHealthy()), slog.String("reason", h.GetReason()))
				}
			}
			_ = hs.Close()
		}
		if !retry.Wait(s.ctx) {
			return
		}
	}
}
