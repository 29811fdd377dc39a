package bus

import (
	"context"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// SetQUICTracer installs tr as the quic-go tracer of b's connections; call
// it before Start.
func SetQUICTracer(b *Bus, tr func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace) {
	b.qconf.Tracer = tr
}
