package multiraft

import (
	"log/slog"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/raftd/internal/storage"
	"github.com/pleiades-db/pleiades/shared/proto/raftmsgpb"
)

// decodeCommands decodes the commands of the entries to apply: cmds[i]
// is ents[i]'s, nil for an entry that carries none (or one that does not
// decode, which is logged and skipped, as applying it would be).
func (r *Replica) decodeCommands(ents []*raftpb.Entry) ([]*raftmsgpb.Command, error) {
	cmds := make([]*raftmsgpb.Command, len(ents))
	for i, e := range ents {
		if e.GetIndex() <= r.mu.applied.GetIndex() || e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		cmd := &raftmsgpb.Command{}
		if err := proto.Unmarshal(e.GetData(), cmd); err != nil {
			r.log.Error("undecodable command skipped", slog.Uint64("index", e.GetIndex()), slog.Any("error", err))
			continue
		}
		cmds[i] = cmd
	}
	return cmds, nil
}

// prefetch reads, in one engine MultiGet, the latest records of the keys
// the commands write that the value cache does not hold: a put builds on
// its key's record (create timestamp and version count), and reading
// them one by one would cost a round trip to stored per write.
func (a *applier) prefetch(cmds []*raftmsgpb.Command) error {
	var keys [][]byte
	seen := map[string]bool{}
	want := func(k []byte) {
		if len(k) == 0 || seen[string(k)] {
			return
		}
		seen[string(k)] = true
		if _, _, hit := a.r.s.vcache.get(k); !hit {
			keys = append(keys, k)
		}
	}
	for _, cmd := range cmds {
		for _, op := range cmd.GetOps() {
			switch {
			case op.GetPut() != nil:
				want(op.GetPut().GetKey())
			case op.GetDelete() != nil:
				want(op.GetDelete().GetKey())
			case op.GetCas() != nil:
				want(op.GetCas().GetKey())
			}
		}
	}
	if len(keys) < 2 {
		return nil // one key: the ordinary read costs the same
	}
	ctx, cancel := a.r.s.storageCtx()
	defer cancel()
	values, found, err := a.r.s.d.Engine.MultiGet(ctx, storage.Data, keys)
	if err != nil {
		return err
	}
	a.pre = make(map[string][]byte, len(keys))
	for i, k := range keys {
		if found[i] {
			a.pre[string(k)] = values[i]
		} else {
			a.pre[string(k)] = nil
		}
	}
	return nil
}
