// Command msgd runs the Pleiades messaging daemon: an embedded NATS server
// clustered with the other hosts' msgd through gossip. See package msgd;
// flags: msgd --help.
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/msgd"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/daemon"
	"github.com/pleiades-db/pleiades/shared/events"
)

func main() { daemon.Main(spec()) }

// spec describes msgd to daemon.Main.
func spec() daemon.Spec {
	d := msgd.DefaultConfig()
	return daemon.Spec{
		Name:             msgd.Name,
		Usage:            "messaging daemon (embedded NATS, clustered through gossip)",
		DefaultBusAddr:   msgd.DefaultBusAddr,
		DefaultAdminAddr: msgd.DefaultAdminAddr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "nats-host", Value: d.NATSHost, Usage: "`IP` the NATS client and route listeners bind"},
			&cli.IntFlag{Name: "nats-port", Value: d.NATSPort, Usage: "TCP `PORT` for NATS clients"},
			&cli.IntFlag{Name: "nats-cluster-port", Value: d.NATSClusterPort, Usage: "TCP `PORT` for NATS routes from other msgd"},
			&cli.BoolFlag{Name: "nats-no-cluster", Usage: "run NATS alone: no routes, JetStream standalone"},
			&cli.StringFlag{Name: "nats-advertise-host", Usage: "`HOST` other hosts reach this msgd at, published in gossip (default: --nats-host unless a wildcard)"},
			&cli.StringFlag{Name: "nats-cluster-name", Value: d.ClusterName, Usage: "NATS cluster `NAME`, the same on every msgd"},
			&cli.StringSliceFlag{Name: "routes", Usage: "comma-separated static route `ADDRS` (host:port of other msgd's route listeners), kept beside those from gossip"},
			&cli.StringFlag{Name: "gossip-addr", Value: d.GossipAddr, Usage: "bus `ADDR` of the node's gossipd: routes and membership events (empty: none)"},
			&cli.StringFlag{Name: "clock-addr", Value: d.ClockAddr, Usage: "bus `ADDR` of the node's clockd: clock health events (empty: none)"},
			&cli.StringFlag{Name: "raft-addr", Value: d.RaftAddr, Usage: "bus `ADDR` of the node's raftd: range events (empty: none)"},
			&cli.StringFlag{Name: "store-addr", Value: d.StoreAddr, Usage: "bus `ADDR` of the node's stored: disk space events (empty: none)"},
			&cli.StringFlag{Name: "workflow-addr", Value: d.WorkflowAddr, Usage: "bus `ADDR` of the node's workflowd: workflow lifecycle events (empty: none)"},
			&cli.StringFlag{Name: "nats-client-tls", Value: d.ClientTLS, Usage: "client TLS: off, on (node certificate), verify (and client certificates from the cluster CA, whose role sets their permissions unless --nats-auth-file: a client certificate's key prefixes limit its subjects)"},
			&cli.StringFlag{Name: "nats-auth-file", Usage: "NATS configuration `FILE` whose authorization block (users, nkeys) authenticates clients"},
			&cli.IntFlag{Name: "nats-max-payload", Value: int(d.MaxPayload), Usage: "largest message in `BYTES`"},
			&cli.BoolFlag{Name: "jetstream", Value: d.JetStream, Usage: "run JetStream (file storage under <data-dir>/msgd/jetstream)"},
			&cli.Int64Flag{Name: "jetstream-max-memory", Value: d.JetStreamMaxMemory, Usage: "`BYTES` of memory-backed stream data"},
			&cli.Int64Flag{Name: "jetstream-max-store", Value: d.JetStreamMaxStore, Usage: "`BYTES` of file-backed stream data"},
			&cli.DurationFlag{Name: "events-max-age", Value: d.EventsMaxAge, Usage: "how long the cluster's events are kept in the JetStream stream " + events.Stream + " (0: no stream)"},
			&cli.Int64Flag{Name: "events-max-bytes", Value: d.EventsMaxBytes, Usage: "`BYTES` of that stream (oldest events dropped first)"},
		},
		Build: func(c *cli.Context, rt *daemon.Runtime) (daemon.Service, error) {
			cfg := msgd.DefaultConfig()
			cfg.DataDir = rt.DataDir
			cfg.NATSHost = c.String("nats-host")
			cfg.NATSPort = c.Int("nats-port")
			cfg.NATSClusterPort = c.Int("nats-cluster-port")
			for name, port := range map[string]int{"nats-port": cfg.NATSPort, "nats-cluster-port": cfg.NATSClusterPort} {
				if port < 0 || port > 65535 {
					return nil, &config.FlagError{Flag: name, Value: strconv.Itoa(port), Err: errors.New("want a port in 0..65535 (0: any free port)")}
				}
			}
			cfg.NoCluster = c.Bool("nats-no-cluster")
			cfg.AdvertiseHost = c.String("nats-advertise-host")
			cfg.ClusterName = c.String("nats-cluster-name")
			var err error
			if cfg.Routes, err = addrList(c, "routes"); err != nil {
				return nil, err
			}
			for flag, dst := range map[string]*string{"gossip-addr": &cfg.GossipAddr, "clock-addr": &cfg.ClockAddr, "raft-addr": &cfg.RaftAddr, "store-addr": &cfg.StoreAddr, "workflow-addr": &cfg.WorkflowAddr} {
				if *dst, err = optionalAddr(c, flag); err != nil {
					return nil, err
				}
			}
			cfg.ClientTLS = c.String("nats-client-tls")
			cfg.AuthFile = c.String("nats-auth-file")
			cfg.MaxPayload = int32(min(c.Int("nats-max-payload"), 1<<30))
			cfg.JetStream = c.Bool("jetstream")
			cfg.JetStreamMaxMemory = c.Int64("jetstream-max-memory")
			cfg.JetStreamMaxStore = c.Int64("jetstream-max-store")
			cfg.EventsMaxAge = c.Duration("events-max-age")
			cfg.EventsMaxBytes = c.Int64("events-max-bytes")
			if err := cfg.Validate(); err != nil {
				var fe *msgd.FieldError
				if errors.As(err, &fe) && flags[fe.Field] != "" {
					return nil, &config.FlagError{Flag: flags[fe.Field], Value: c.String(flags[fe.Field]), Err: fe.Err}
				}
				return nil, err
			}
			return msgd.New(cfg, msgd.Deps{Logger: rt.Logger, Registerer: rt.Registry, Bus: rt.Bus, Admin: rt.Admin, TLS: rt.TLS, NodeID: rt.NodeID})
		},
	}
}

// flags names the flag of each Config field.
var flags = map[string]string{
	"NATSHost": "nats-host", "NATSPort": "nats-port", "NATSClusterPort": "nats-cluster-port",
	"AdvertiseHost": "nats-advertise-host", "ClusterName": "nats-cluster-name", "Routes": "routes",
	"GossipAddr": "gossip-addr", "ClockAddr": "clock-addr", "RaftAddr": "raft-addr", "StoreAddr": "store-addr", "WorkflowAddr": "workflow-addr",
	"ClientTLS": "nats-client-tls", "MaxPayload": "nats-max-payload",
	"JetStreamMaxMemory": "jetstream-max-memory", "JetStreamMaxStore": "jetstream-max-store",
	"EventsMaxAge": "events-max-age", "EventsMaxBytes": "events-max-bytes",
}

// optionalAddr reads an address flag that may be empty.
func optionalAddr(c *cli.Context, name string) (string, error) {
	if c.String(name) == "" {
		return "", nil
	}
	return config.Addr(c, name)
}

// addrList reads a comma-separated address list flag (also accepted
// repeated) and validates each address.
func addrList(c *cli.Context, name string) ([]string, error) {
	var out []string
	for _, v := range c.StringSlice(name) {
		for _, a := range strings.Split(v, ",") {
			if a = strings.TrimSpace(a); a == "" {
				continue
			}
			if err := config.ValidateAddr(a); err != nil {
				return nil, &config.FlagError{Flag: name, Value: a, Err: fmt.Errorf("invalid address: %w", err)}
			}
			out = append(out, a)
		}
	}
	return out, nil
}
