package gossipd_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

// TestAdvertiseAddr checks the address a member is known by: the
// advertised one when given; a bus on a wildcard address without one
// fails Start, since no other member could dial it.
func TestAdvertiseAddr(t *testing.T) {
	for _, tt := range []struct {
		name, bus, advertise string
		wantErr              string
	}{
		{"advertised", "0.0.0.0:0", "host1.example:7403", ""},
		{"wildcard without advertise", "0.0.0.0:0", "", "set --advertise-addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := daemontest.Common(t)
			c.BusAddr = tt.bus
			rt := daemontest.NewUnstartedRuntime(t, gossipd.Name, daemontest.CA(t), c)
			cfg := gossipd.DefaultConfig()
			cfg.AdvertiseAddr = tt.advertise
			srv, err := gossipd.New(cfg, gossipd.Deps{Logger: rt.Logger, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := rt.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Stop(ctx) }()
			err = srv.Start(ctx)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v; want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var self string
			for _, m := range srv.Members() {
				if m.ID == rt.NodeID {
					self = m.Addr
				}
			}
			if self != tt.advertise {
				t.Errorf("own member address %q; want %q", self, tt.advertise)
			}
		})
	}
}
