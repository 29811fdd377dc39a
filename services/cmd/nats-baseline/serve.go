package main

import (
	"context"
	"fmt"
	"net/url"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// serve runs a plain nats-server (the library msgd embeds, standalone, no
// TLS, no JetStream) on addr until ctx ends: the baseline of the
// benchmark. With clusterAddr, it also listens for routes there and dials
// routes (host:port each), so two of them form a plain NATS cluster.
func serve(ctx context.Context, host string, port int, clusterPort int, routes []string) error {
	o := &natsserver.Options{Host: host, Port: port, NoSigs: true, NoLog: true, ServerName: fmt.Sprintf("baseline-%d", port)}
	if clusterPort > 0 {
		o.Cluster = natsserver.ClusterOpts{Name: "baseline", Host: host, Port: clusterPort}
		for _, r := range routes {
			u, err := url.Parse("nats-route://" + r)
			if err != nil {
				return err
			}
			o.Routes = append(o.Routes, u)
		}
	}
	ns, err := natsserver.NewServer(o)
	if err != nil {
		return err
	}
	ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	<-ctx.Done()
	return nil
}
