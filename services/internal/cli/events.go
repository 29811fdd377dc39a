package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/events"
	"github.com/pleiades-db/pleiades/shared/output"
)

// defaultNATSURL is node 1's msgd (`make run`, `make dev`).
const defaultNATSURL = "nats://127.0.0.1:4222"

// natsFlags are the flags of commands that connect to msgd as a NATS
// client.
func natsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "nats-url", Value: defaultNATSURL, Usage: "comma-separated NATS `URLS` of msgd (cluster.json lists each node's)"},
		&cli.StringFlag{Name: "nats-user", Usage: "NATS user `NAME` (msgd --nats-auth-file)"},
		&cli.StringFlag{Name: "nats-password", Usage: "NATS `PASSWORD`"},
		&cli.BoolFlag{Name: "nats-tls", Usage: "use TLS, verifying msgd with the cluster CA and presenting the node certificate of --certs-dir"},
		certsDirFlag(),
	}
}

// natsOptions builds the client options the natsFlags ask for.
func natsOptions(c *cli.Context, name string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}
	if u := c.String("nats-user"); u != "" {
		opts = append(opts, nats.UserInfo(u, c.String("nats-password")))
	}
	if c.Bool("nats-tls") {
		var addrs []string
		for _, u := range strings.Split(c.String("nats-url"), ",") {
			if i := strings.Index(u, "://"); i >= 0 {
				u = u[i+3:]
			}
			addrs = append(addrs, strings.TrimSpace(u))
		}
		tc, err := pickCerts(c, addrs).load()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

func eventsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "tail the cluster's events (membership, clock health, range leadership) from msgd",
		Description: "Subscribes through msgd's NATS to the events msgd publishes under pleiades.events.>\n" +
			"(see shared/events for the subjects and the JSON schema) and prints each as it arrives:\n" +
			"one line per event, or with --output json the event's JSON, one per line. --subject\n" +
			"narrows the subscription (repeatable, wildcards allowed, e.g. pleiades.events.member.>\n" +
			"or pleiades.events.range.leader.*). Runs until Ctrl-C, or until --count events arrived;\n" +
			"with --timeout, exits 1 if they did not arrive in time. With --since, the events kept in\n" +
			"msgd's JetStream stream " + events.Stream + " from that time (a duration ago or an RFC 3339\n" +
			"time) come first, then the new ones as they are stored.",
		Flags: append([]cli.Flag{
			&cli.StringSliceFlag{Name: "subject", Value: cli.NewStringSlice(events.SubjectAll), Usage: "`SUBJECT` to follow (repeatable)"},
			&cli.IntFlag{Name: "count", Usage: "exit after `N` events (0: never)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (0: never)"},
			&cli.StringFlag{Name: "since", Usage: "replay the kept events from `WHEN` (a duration ago, e.g. 1h, or an RFC 3339 time) before the new ones"},
			output.Flag(),
		}, natsFlags()...),
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			subjects := c.StringSlice("subject")
			for _, s := range subjects {
				if s != events.SubjectAll && !strings.HasPrefix(s, events.Prefix+".") {
					return config.Usagef("invalid value %q for flag --subject: events are under %s", s, events.SubjectAll)
				}
			}
			if c.Int("count") < 0 || c.Duration("timeout") < 0 {
				return config.Usagef("--count and --timeout must not be negative")
			}
			var since time.Time
			if v := c.String("since"); v != "" {
				if d, err := time.ParseDuration(v); err == nil && d >= 0 {
					since = time.Now().Add(-d)
				} else if since, err = time.Parse(time.RFC3339Nano, v); err != nil {
					return config.Usagef("invalid value %q for flag --since: want a duration ago (1h) or an RFC 3339 time", v)
				}
			}
			opts, err := natsOptions(c, "pleiades events")
			if err != nil {
				return err
			}
			nc, err := nats.Connect(c.String("nats-url"), opts...)
			if err != nil {
				return fmt.Errorf("connect to %s (--nats-url): %w", c.String("nats-url"), err)
			}
			defer nc.Close()
			msgs := make(chan *nats.Msg, 1024)
			if since.IsZero() {
				for _, s := range subjects {
					if _, err := nc.ChanSubscribe(s, msgs); err != nil {
						return fmt.Errorf("subscribe to %q: %w", s, err)
					}
				}
				if err := nc.Flush(); err != nil {
					return fmt.Errorf("subscribe: %w", err)
				}
				// NATS answers a refused subscription before the flush's
				// PONG: its refusal is known now.
				if err := nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
					return fmt.Errorf("subscribe: %w (a client certificate limited to key prefixes may not read the cluster's events: use an admin, node or unlimited client certificate)", err)
				}
			} else {
				stop, err := replayEvents(e.ctx, nc, subjects, since, msgs)
				if err != nil {
					return err
				}
				defer stop()
			}
			var timeout <-chan time.Time
			if d := c.Duration("timeout"); d > 0 {
				t := time.NewTimer(d)
				defer t.Stop()
				timeout = t.C
			}
			for n := 0; c.Int("count") == 0 || n < c.Int("count"); n++ {
				select {
				case <-e.ctx.Done():
					return nil
				case <-timeout:
					return fmt.Errorf("%d events within --timeout %v", n, c.Duration("timeout"))
				case m := <-msgs:
					printEvent(e.stdout, f, m)
				}
			}
			return nil
		},
	}
}

// replayEvents feeds msgs from the events stream, from since on, through
// an ordered consumer (the stored events, then each new one); stop ends
// it.
func replayEvents(ctx context.Context, nc *nats.Conn, subjects []string, since time.Time, msgs chan<- *nats.Msg) (stop func(), err error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	filter := subjects
	if len(filter) == 1 && filter[0] == events.SubjectAll {
		filter = nil
	}
	cons, err := js.OrderedConsumer(cctx, events.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: filter, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return nil, fmt.Errorf("read the events kept in %s (msgd with JetStream; msgd --events-max-age): %w", events.Stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- &nats.Msg{Subject: m.Subject(), Data: m.Data()}:
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read the events kept in %s: %w", events.Stream, err)
	}
	return cc.Stop, nil
}

// printEvent writes one event: its JSON as published (json), or a line.
func printEvent(w io.Writer, f string, m *nats.Msg) {
	if f == "json" {
		fmt.Fprintf(w, "%s\n", m.Data)
		return
	}
	ev, err := events.Decode(m.Data)
	if err != nil {
		fmt.Fprintf(w, "%s  (undecodable: %v)\n", m.Subject, err)
		return
	}
	fmt.Fprintf(w, "%s  %-14s  node %-20d  %s\n", ev.Time.Local().Format("15:04:05.000"), ev.Type, ev.NodeID, eventDetails(ev))
}

func eventDetails(ev *events.Event) string {
	switch {
	case ev.Member != nil:
		return fmt.Sprintf("%s incarnation %d at %s", ev.Member.State, ev.Member.Incarnation, ev.Member.Addr)
	case ev.Clock != nil:
		h := "healthy"
		if !ev.Clock.Healthy {
			h = "UNHEALTHY: " + ev.Clock.Reason
		}
		return fmt.Sprintf("%s (%d peers reachable, %d far)", h, ev.Clock.PeersReachable, ev.Clock.PeersFar)
	case ev.Range != nil:
		r := ev.Range
		var reps []string
		for _, rp := range r.Replicas {
			reps = append(reps, fmt.Sprintf("n%d", rp.NodeID))
		}
		switch ev.Type {
		case events.RangeLeader:
			return fmt.Sprintf("range %d: leader n%d (was n%d), term %d", r.RangeID, r.LeaderNodeID, r.PreviousLeaderNodeID, r.Term)
		case events.RangeConf:
			return fmt.Sprintf("range %d: voters %v learners %v", r.RangeID, r.Voters, r.Learners)
		default:
			return fmt.Sprintf("range %d: replica on n%d; replicas %s", r.RangeID, ev.NodeID, strings.Join(reps, ","))
		}
	case ev.Workflow != nil:
		w := ev.Workflow
		d := fmt.Sprintf("%s (%s v%d)", w.InstanceID, w.Definition, w.Version)
		if w.Step != "" {
			d += fmt.Sprintf(" step %s", w.Step)
			if w.Attempt > 1 {
				d += fmt.Sprintf(" attempt %d", w.Attempt)
			}
		}
		if w.Error != "" {
			d += ": " + w.Error
		}
		return d
	case ev.Disk != nil:
		if ev.Disk.Full {
			return "WRITES REFUSED: " + ev.Disk.Reason
		}
		return fmt.Sprintf("room: %s free of %s, floor %s", humanBytes(ev.Disk.FreeBytes), humanBytes(ev.Disk.TotalBytes), humanBytes(ev.Disk.FloorBytes))
	}
	return ""
}
