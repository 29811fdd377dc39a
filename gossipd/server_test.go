package gossipd_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeStatusAndReady(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, gossipd.Name, daemontest.CA(t), daemontest.Common(t))
	srv, err := gossipd.New(gossipd.DefaultConfig(), gossipd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	daemontest.CheckLifecycle(t, daemontest.Lifecycle{Runtime: rt, Service: srv, ReadyCheck: gossipd.ReadyCheck})
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*gossipd.Config)
		ok   bool
	}{
		{"default", func(*gossipd.Config) {}, true},
		{"good join", func(c *gossipd.Config) { c.Join = []string{"127.0.0.1:7413"} }, true},
		{"bad join", func(c *gossipd.Config) { c.Join = []string{"gossipd"} }, false},
		{"advertise", func(c *gossipd.Config) { c.AdvertiseAddr = "host1:7403" }, true},
		{"wildcard advertise", func(c *gossipd.Config) { c.AdvertiseAddr = "0.0.0.0:7403" }, false},
	} {
		c := gossipd.DefaultConfig()
		tt.mod(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v; want ok=%v", tt.name, err, tt.ok)
		}
	}
}
