package raftd

import (
	"context"
	"errors"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// MethodWatchRanges is the server stream of this node's range events on
// wire.ProtoKV (kvpb.WatchRangesRequest → kvpb.RangeEvent): a replica here
// became leader, a replica was created here, or (sent by the leader) a
// range's configuration changed. Only changes after the stream opened are
// sent. A reader more than 256 events behind is cut off with Unavailable
// and should reopen the stream; so does a reader of a raftd that is not
// started yet.
const MethodWatchRanges = multiraft.MethodWatchRanges

// registerEvents serves MethodWatchRanges.
func (s *Server) registerEvents() {
	bus.HandleStream(s.d.Bus, wire.ProtoKV, MethodWatchRanges, func(ctx context.Context, _ *kvpb.WatchRangesRequest, send func(*kvpb.RangeEvent) error) error {
		st := s.store()
		if st == nil {
			return errNotStarted
		}
		err := st.WatchRanges(ctx, send)
		if errors.Is(err, multiraft.ErrWatchBehind) {
			return bus.Errorf(bus.CodeUnavailable, "raftd: %v", err)
		}
		return err
	})
}
