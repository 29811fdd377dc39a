package raftd

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/backoff"
	"github.com/pleiades-db/pleiades/shared/storeclient"
)

// DiskCondition is the name of raftd's readiness condition that fails
// (raftd stays ready: it serves reads) while its node's disk is full and
// the writes of the ranges led here are refused.
const DiskCondition = "disk"

// watchDisk follows stored's disk status (WatchDisk) until Stop and hands
// each one to the store: while stored reports its disk full, the ranges
// led here refuse writes at once (ResourceExhausted, reason disk_full)
// and followers hold the appends stored refuses; once it reports room,
// the held writes are tried again at once. The stream is reopened with
// backoff when it breaks (stored restarting); meanwhile the refusals
// themselves tell the store (see multiraft's disk.go).
func (s *Server) watchDisk(st *multiraft.Store) {
	sc := storeclient.New(s.d.Bus, s.cfg.StoredAddr)
	retry := backoff.New(100*time.Millisecond, 5*time.Second)
	full := false
	for {
		ds, err := sc.WatchDisk(s.ctx)
		if err == nil {
			retry.Reset()
			for {
				d, err := ds.Recv()
				if err != nil {
					break
				}
				st.SetDiskStatus(d)
				switch {
				case d.GetFull() && !full:
					s.log.Warn("stored reports its disk full: writes to the ranges led here are refused, reads served", slog.String("disk", d.Describe()))
				case !d.GetFull() && full:
					s.log.Info("stored reports room on its disk again: writes accepted", slog.String("disk", d.Describe()))
				}
				full = d.GetFull()
			}
			_ = ds.Close()
		} else if !errors.Is(err, context.Canceled) {
			s.log.Debug("stored's disk status unavailable", slog.Any("error", err))
		}
		if !retry.Wait(s.ctx) {
			return
		}
	}
}

// diskCondition is the readiness condition DiskCondition.
func (s *Server) diskCondition(context.Context) error {
	st := s.store()
	if st == nil {
		return nil
	}
	if reason := st.DiskFull(); reason != "" {
		return errors.New(reason + "; writes to the ranges led here refused, reads served")
	}
	return nil
}
