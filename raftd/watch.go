package raftd

import (
	"context"

	"github.com/pleiades-db/pleiades/raftd/internal/multiraft"
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// MethodWatch is the server stream of the changes to a span of one range
// on wire.ProtoKV (kvpb.WatchRequest → kvpb.WatchResponse), served by the
// range's leader: a replay of the versions after WatchRequest.from, then
// the live changes, and resolved-timestamp checkpoints.
const MethodWatch = multiraft.MethodWatch

// registerWatch serves MethodWatch.
func (s *Server) registerWatch() {
	bus.HandleStream(s.d.Bus, wire.ProtoKV, MethodWatch, func(ctx context.Context, req *kvpb.WatchRequest, send func(*kvpb.WatchResponse) error) error {
		st := s.store()
		if st == nil {
			return errNotStarted
		}
		return st.Watch(ctx, req, send)
	})
}
