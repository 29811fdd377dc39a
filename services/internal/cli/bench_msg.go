package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pleiades-db/pleiades/services/internal/bench/msg"
	"github.com/pleiades-db/pleiades/shared/config"
	"github.com/pleiades-db/pleiades/shared/output"
)

func benchMsgCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "msg",
		Usage: "NATS pub/sub through msgd against a plain nats-server, and JetStream acknowledged publishes",
		Description: "One publisher connected to --pub-url and one subscriber connected to --sub-url (by\n" +
			"default nodes 1 and 2 of `make dev`: the messages cross a route between two hosts' msgd)\n" +
			"exchange --count messages of --size bytes as fast as the publisher sends (messages per\n" +
			"second, first publish to last receipt), then --latency-count messages one at a time\n" +
			"(one-way latency percentiles). With --baseline the same runs go, alternated round by\n" +
			"round, through a plain nats-server (the library msgd embeds, standalone, started here as\n" +
			"a child process) and through two plain nats-servers routed together. With --jetstream a\n" +
			"file stream with --js-replicas replicas is created on --pub-url, --js-count messages are\n" +
			"published with --js-window acknowledgements outstanding, then --js-sync-count one at a\n" +
			"time, and the stream is deleted.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "pub-url", Value: "nats://" + hostPort(natsPort), Usage: "publisher's msgd `URL`"},
			&cli.StringFlag{Name: "sub-url", Value: "nats://" + hostPort(natsPort+nodePortStride), Usage: "subscriber's msgd `URL`"},
			&cli.IntFlag{Name: "size", Value: 128, Usage: "message size in `BYTES` (at least 8)"},
			&cli.IntFlag{Name: "count", Value: 200000, Usage: "messages of the throughput phase"},
			&cli.IntFlag{Name: "latency-count", Value: 10000, Usage: "messages of the latency phase"},
			&cli.IntFlag{Name: "rounds", Value: 3, Usage: "rounds (each: msgd, then the baselines)"},
			&cli.BoolFlag{Name: "baseline", Value: true, Usage: "also run through plain nats-servers"},
			&cli.BoolFlag{Name: "jetstream", Value: true, Usage: "also measure JetStream acknowledged publishes"},
			&cli.IntFlag{Name: "js-replicas", Value: 3, Usage: "replicas of the JetStream stream"},
			&cli.IntFlag{Name: "js-count", Value: 20000, Usage: "JetStream messages published with a window"},
			&cli.IntFlag{Name: "js-window", Value: 256, Usage: "JetStream acknowledgements outstanding"},
			&cli.IntFlag{Name: "js-sync-count", Value: 2000, Usage: "JetStream messages published one at a time"},
			output.Flag(),
		}, natsFlags()...),
		Action: func(c *cli.Context) error {
			f, err := format(c)
			if err != nil {
				return err
			}
			for _, n := range []string{"size", "count", "latency-count", "rounds", "js-replicas", "js-count", "js-window"} {
				if c.Int(n) < 1 {
					return config.Usagef("invalid value %d for flag --%s: want 1 or more", c.Int(n), n)
				}
			}
			if c.Int("size") < 8 {
				return config.Usagef("invalid value %d for flag --size: want 8 or more", c.Int("size"))
			}
			client, err := natsOptions(c, "pleiades bench msg")
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel() // ends the baseline servers
			o := msg.Options{PubURL: c.String("pub-url"), SubURL: c.String("sub-url"), Client: client,
				Size: c.Int("size"), Count: c.Int("count"), LatencyCount: c.Int("latency-count")}
			type target struct {
				name     string
				pub, sub string
			}
			targets := []target{{"msgd (2 hosts)", o.PubURL, o.SubURL}}
			if c.Bool("baseline") {
				single, err := startBaseline(ctx, 1)
				if err != nil {
					return err
				}
				routed, err := startBaseline(ctx, 2)
				if err != nil {
					return err
				}
				targets = append(targets, target{"nats-server (1)", single[0], single[0]}, target{"nats-server (2 routed)", routed[0], routed[1]})
			}
			out := benchMsgOutput{}
			for round := 1; round <= c.Int("rounds"); round++ {
				for _, tg := range targets {
					ro := o
					ro.PubURL, ro.SubURL = tg.pub, tg.sub
					// Plain servers take no credentials or TLS.
					if tg.pub != o.PubURL {
						ro.Client = nil
					}
					r, err := msg.Core(ctx, ro)
					r.Target = tg.name
					if err != nil {
						return fmt.Errorf("round %d, %s: %w", round, tg.name, err)
					}
					out.Rounds = append(out.Rounds, benchMsgRound{Round: round, Result: r})
				}
			}
			out.summarize(targets[0].name)
			if c.Bool("jetstream") {
				jr, err := msg.JetStream(ctx, o.PubURL, client, o.Size, c.Int("js-replicas"), c.Int("js-count"), c.Int("js-window"), c.Int("js-sync-count"))
				if err != nil {
					return fmt.Errorf("jetstream: %w", err)
				}
				out.JetStream = &jr
			}
			if f == "json" {
				return output.PrintJSON(e.stdout, out)
			}
			t := output.NewTable(e.stdout, "ROUND", "TARGET", "MSGS/S", "MB/S", "P50 µs", "P99 µs", "MAX µs")
			for _, r := range out.Rounds {
				t.Row(strconv.Itoa(r.Round), r.Target, fmt.Sprintf("%.0f", r.MsgsPerSec), fmt.Sprintf("%.1f", r.MBPerSec),
					fmt.Sprintf("%.0f", r.LatencyP50Us), fmt.Sprintf("%.0f", r.LatencyP99Us), fmt.Sprintf("%.0f", r.LatencyMaxUs))
			}
			if err := t.Flush(); err != nil {
				return err
			}
			for _, s := range out.Medians {
				fmt.Fprintf(e.stdout, "median %-24s %9.0f msgs/s  p99 %5.0f µs  msgd/this %.2fx\n", s.Target, s.MsgsPerSec, s.LatencyP99Us, s.VsMsgd)
			}
			if j := out.JetStream; j != nil {
				fmt.Fprintf(e.stdout, "jetstream R%d: %.0f acked publishes/s (window %d); one at a time %.0f/s, p99 %.0f µs\n",
					j.Replicas, j.AckedPerSec, j.Window, j.SyncPerSec, j.SyncP99Us)
			}
			return nil
		},
	}
}

type benchMsgRound struct {
	Round int `json:"round"`
	msg.Result
}

type benchMsgMedian struct {
	Target       string  `json:"target"`
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	LatencyP99Us float64 `json:"latency_p99_us"`
	// VsMsgd is msgd's median msgs/s over this target's.
	VsMsgd float64 `json:"msgd_ratio"`
}

type benchMsgOutput struct {
	Rounds    []benchMsgRound  `json:"rounds"`
	Medians   []benchMsgMedian `json:"medians"`
	JetStream *msg.JSResult    `json:"jetstream,omitempty"`
}

// summarize computes each target's median figures and msgd's ratio to it.
func (o *benchMsgOutput) summarize(msgdTarget string) {
	var names []string
	rate, p99 := map[string][]float64{}, map[string][]float64{}
	for _, r := range o.Rounds {
		if _, ok := rate[r.Target]; !ok {
			names = append(names, r.Target)
		}
		rate[r.Target] = append(rate[r.Target], r.MsgsPerSec)
		p99[r.Target] = append(p99[r.Target], r.LatencyP99Us)
	}
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return v[len(v)/2]
	}
	base := median(rate[msgdTarget])
	for _, n := range names {
		m := benchMsgMedian{Target: n, MsgsPerSec: median(rate[n]), LatencyP99Us: median(p99[n])}
		m.VsMsgd = base / m.MsgsPerSec
		o.Medians = append(o.Medians, m)
	}
}

// startBaseline starts n plain nats-servers routed together, each a child
// process (the nats-baseline command, beside the pleiades binary), killed
// when ctx ends, and returns their client URLs once they accept
// connections.
func startBaseline(ctx context.Context, n int) ([]string, error) {
	self, err := toolPath("nats-baseline")
	if err != nil {
		return nil, err
	}
	var ports, cports []int
	for range n {
		p, err := freeTCPPort()
		if err != nil {
			return nil, err
		}
		cp, err := freeTCPPort()
		if err != nil {
			return nil, err
		}
		ports, cports = append(ports, p), append(cports, cp)
	}
	var urls []string
	for i := range n {
		args := []string{"--port", strconv.Itoa(ports[i])}
		if n > 1 {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, hostPort(cports[j]))
				}
			}
			args = append(args, "--cluster-port", strconv.Itoa(cports[i]), "--routes", strings.Join(routes, ","))
		}
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start a baseline nats-server: %w", err)
		}
		// Reaped when ctx ends and exec kills it.
		go func() { _ = cmd.Wait() }()
		addr := hostPort(ports[i])
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("baseline nats-server on %s: %w", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		urls = append(urls, "nats://"+addr)
	}
	return urls, nil
}

func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", hostPort(0))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
