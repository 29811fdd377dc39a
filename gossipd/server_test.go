package gossipd_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pleiades-db/pleiades/gossipd"
	"github.com/pleiades-db/pleiades/shared/daemon/daemontest"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeStatusAndReady(t *testing.T) {
	rt := daemontest.NewUnstartedRuntime(t, gossipd.Name, daemontest.CA(t), daemontest.Common(t))
	srv, err := gossipd.New(gossipd.DefaultConfig(), gossipd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, NodeID: rt.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if ok, _ := rt.Admin.Ready(ctx); ok {
		t.Error("ready before start")
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-srv.Ready()

	client := daemontest.NewRuntime(t, "client")
	var st adminpb.Status
	if err := client.Bus.Call(ctx, rt.Bus.Addr().String(), wire.ProtoAdmin, "Status", &adminpb.StatusRequest{}, &st); err != nil {
		t.Fatalf("bus Status: %v", err)
	}
	if st.GetDaemon() != gossipd.Name || !st.GetReady() || !st.GetChecks()[gossipd.ReadyCheck].GetOk() {
		t.Errorf("Status = %v; want gossipd ready", &st)
	}
	resp, err := http.Get("http://" + rt.Admin.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz = %d %q", resp.StatusCode, body)
	}
	http.DefaultClient.CloseIdleConnections()

	if err := srv.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, failed := rt.Admin.Ready(ctx); ok || failed[gossipd.ReadyCheck] == nil {
		t.Errorf("after Stop: ready=%v failed=%v; want the gossipd check failing", ok, failed)
	}
	if err := rt.Stop(ctx); err != nil {
		t.Fatal(err)
	}
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
