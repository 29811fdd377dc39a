package msgd

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pleiades-db/pleiades/shared/events"
)

// eventsStreamLoop keeps the events stream (events.Stream) in JetStream:
// created once JetStream answers, with as many replicas as there are
// msgd routed (at most 3), raised as msgd join; never lowered (a msgd
// that sees fewer peers for a while must not shrink it). Every msgd runs
// it: creations with the same configuration are idempotent, and a
// creation that lost a race is an update at the next round. It returns
// when ctx ends.
func (s *Server) eventsStreamLoop(ctx context.Context, nc *nats.Conn) {
	js, err := jetstream.New(nc)
	if err != nil {
		s.log.Warn("events stream: no JetStream client", slog.Any("err", err))
		return
	}
	t := time.NewTicker(s.cfg.RefreshInterval)
	defer t.Stop()
	failingSince := time.Time{}
	warned := false
	for {
		err := s.ensureEventsStream(ctx, js)
		switch {
		case err == nil:
			failingSince, warned = time.Time{}, false
		case ctx.Err() != nil:
			return
		case failingSince.IsZero():
			failingSince = time.Now()
			fallthrough
		default:
			// JetStream needs a quorum of its meta group: say so once it
			// has been missing for a while, not at every start.
			if !warned && time.Since(failingSince) > time.Minute {
				s.log.Warn("events stream not kept: JetStream does not answer", slog.Any("err", err))
				warned = true
			} else {
				s.log.Debug("events stream", slog.Any("err", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// eventsReplicas is the replica count the events stream should have.
func (s *Server) eventsReplicas() int {
	if s.cfg.NoCluster {
		return 1
	}
	return min(3, len(s.routes()))
}

// ensureEventsStream creates the events stream or raises its replicas.
func (s *Server) ensureEventsStream(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	want := s.eventsReplicas()
	st, err := js.Stream(ctx, events.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, s.eventsStreamConfig(want))
		if err == nil {
			s.log.Info("events stream created", slog.String("stream", events.Stream), slog.Int("replicas", want), slog.Duration("max_age", s.cfg.EventsMaxAge))
		}
		return err
	}
	if err != nil {
		return err
	}
	cfg := st.CachedInfo().Config
	if cfg.Replicas >= want && cfg.MaxAge == s.cfg.EventsMaxAge && cfg.MaxBytes == s.cfg.EventsMaxBytes {
		return nil
	}
	nu := s.eventsStreamConfig(max(want, cfg.Replicas))
	if _, err := js.UpdateStream(ctx, nu); err != nil {
		return err
	}
	s.log.Info("events stream updated", slog.String("stream", events.Stream), slog.Int("replicas", nu.Replicas), slog.Duration("max_age", nu.MaxAge))
	return nil
}

func (s *Server) eventsStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.Stream,
		Description: "The cluster's events (shared/events), kept by msgd",
		Subjects:    []string{events.SubjectAll},
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      s.cfg.EventsMaxAge,
		MaxBytes:    s.cfg.EventsMaxBytes,
		Discard:     jetstream.DiscardOld,
		Duplicates:  2 * time.Minute,
	}
}
