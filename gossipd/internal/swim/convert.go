package swim

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/gossipd/internal/vivaldi"
	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// ErrMetadataTooLarge is returned when encoded metadata exceeds
// Config.MaxMetadataSize.
var ErrMetadataTooLarge = errors.New("swim: metadata too large")

func sizeOf(m proto.Message) int { return proto.Size(m) }

// CoordinateToProto converts a coordinate for the wire.
func CoordinateToProto(c *vivaldi.Coordinate) *gossippb.Coordinate {
	return &gossippb.Coordinate{Vec: append([]float64(nil), c.Vec...), Error: c.Error, Adjustment: c.Adjustment, Height: c.Height}
}

// CoordinateFromProto converts a wire coordinate.
func CoordinateFromProto(c *gossippb.Coordinate) *vivaldi.Coordinate {
	return &vivaldi.Coordinate{Vec: append([]float64(nil), c.GetVec()...), Error: c.GetError(), Adjustment: c.GetAdjustment(), Height: c.GetHeight()}
}

// MemberToProto converts a member; coord may be nil.
func MemberToProto(m Member, coord *gossippb.Coordinate) *gossippb.Member {
	return &gossippb.Member{NodeId: m.ID, Addr: m.Addr, State: m.State, Incarnation: m.Incarnation, Metadata: m.Metadata,
		Coordinate: coord, StateChangeUnixNano: m.Changed.UnixNano()}
}
