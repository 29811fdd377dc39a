package swim

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/pleiades-db/pleiades/shared/proto/gossippb"
)

// broadcastOverhead is the framing of one repeated Broadcast field in a
// Packet: a tag byte and a length varint of up to 2 bytes (a packet is
// below 16 KiB).
const broadcastOverhead = 3

// Errors of the codec.
var (
	// ErrPacketTooLarge: the probe alone does not fit in the budget.
	ErrPacketTooLarge = errors.New("swim: packet too large")
	// ErrWrongCluster: the packet belongs to another cluster.
	ErrWrongCluster = errors.New("swim: packet of another cluster")
	// ErrMalformed: the bytes are not a valid packet.
	ErrMalformed = errors.New("swim: malformed packet")
)

// EncodePacket marshals p after filling its remaining room up to max bytes
// with broadcasts taken from q (q may be nil).
func EncodePacket(p *gossippb.Packet, q *Queue, max int) ([]byte, error) {
	base := proto.Size(p)
	if base > max {
		return nil, fmt.Errorf("%d bytes before broadcasts, budget %d: %w", base, max, ErrPacketTooLarge)
	}
	if q != nil {
		p.Broadcasts = append(p.Broadcasts, q.Take(broadcastOverhead, max-base)...)
	}
	b, err := proto.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("swim: marshal packet: %w", err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%d bytes, budget %d: %w", len(b), max, ErrPacketTooLarge)
	}
	return b, nil
}

// DecodePacket parses a datagram and checks its cluster name.
func DecodePacket(b []byte, cluster string) (*gossippb.Packet, error) {
	var p gossippb.Packet
	if err := proto.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if p.GetCluster() != cluster {
		return nil, fmt.Errorf("cluster %q, want %q: %w", p.GetCluster(), cluster, ErrWrongCluster)
	}
	for i, br := range p.GetBroadcasts() {
		if br.GetKind() == nil {
			return nil, fmt.Errorf("%w: broadcast %d is empty", ErrMalformed, i)
		}
		if broadcastNode(br) == 0 && br.GetUser() == nil {
			return nil, fmt.Errorf("%w: broadcast %d names node 0", ErrMalformed, i)
		}
	}
	return &p, nil
}
