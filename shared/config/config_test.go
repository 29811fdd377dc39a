package config

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// result is what one run of the test app saw.
type result struct {
	common Common
	peers  []string
	probe  time.Duration
}

// runApp runs an app with the common flags plus two daemon-specific ones
// and returns what the action read, or the app's error.
func runApp(t *testing.T, args ...string) (result, error) {
	t.Helper()
	var got result
	flags := append(CommonFlags("127.0.0.1:7401", "127.0.0.1:7501"),
		&cli.StringSliceFlag{Name: "peers", Usage: "peer addresses"},
		&cli.DurationFlag{Name: "probe-interval", Value: time.Second, Usage: "probe period"},
	)
	app := NewApp("testd", "test daemon", flags, func(c *cli.Context) error {
		cm, err := CommonFrom(c)
		if err != nil {
			return err
		}
		got = result{common: cm, peers: c.StringSlice("peers"), probe: c.Duration("probe-interval")}
		return nil
	})
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.Run(append([]string{"testd"}, args...))
	return got, err
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	got, err := runApp(t)
	if err != nil {
		t.Fatal(err)
	}
	want := Common{
		DataDir: "./data", BusAddr: "127.0.0.1:7401", AdminAddr: "127.0.0.1:7501",
		CertsDir: filepath.Join("data", "certs"), MaxFrameSize: 16 << 20, LogFormat: "text",
		LogLevel: slog.LevelInfo, ShutdownTimeout: 10 * time.Second,
	}
	if got.common != want {
		t.Errorf("CommonFrom() = %+v; want %+v", got.common, want)
	}
	if got.probe != time.Second {
		t.Errorf("probe-interval = %v; want 1s", got.probe)
	}
}

func TestSources(t *testing.T) {
	yamlFile := writeFile(t, "c.yaml", `
node-id: 42
data-dir: /tmp/yaml
log-format: json
shutdown-timeout: 3s
peers: [a:1, b:2]
probe-interval: 250ms
dev: true
`)
	tomlFile := writeFile(t, "c.toml", `
node-id = 43
data-dir = "/tmp/toml"
log-level = "debug"
max-frame-size = 262144
peers = ["c:3"]
`)
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, r result)
	}{
		{
			name: "env",
			env:  map[string]string{"PLEIADES_NODE_ID": "7", "PLEIADES_DATA_DIR": "/tmp/env", "PLEIADES_PROBE_INTERVAL": "2s", "PLEIADES_LOG_LEVEL": "warn", "PLEIADES_BUS_TCP": "false"},
			check: func(t *testing.T, r result) {
				if r.common.NodeID != 7 || r.common.DataDir != "/tmp/env" || r.probe != 2*time.Second || r.common.LogLevel != slog.LevelWarn || !r.common.NoBusTCP {
					t.Errorf("got %+v probe %v; want node 7, /tmp/env, 2s, warn, no bus TCP", r.common, r.probe)
				}
				if r.common.CertsDir != "/tmp/env/certs" {
					t.Errorf("CertsDir = %q; want /tmp/env/certs", r.common.CertsDir)
				}
			},
		},
		{
			name: "yaml file",
			args: []string{"--config", yamlFile},
			check: func(t *testing.T, r result) {
				c := r.common
				if c.NodeID != 42 || c.DataDir != "/tmp/yaml" || c.LogFormat != "json" || c.ShutdownTimeout != 3*time.Second || !c.Dev {
					t.Errorf("got %+v; want yaml values", c)
				}
				if !reflect.DeepEqual(r.peers, []string{"a:1", "b:2"}) || r.probe != 250*time.Millisecond {
					t.Errorf("peers %v probe %v; want [a:1 b:2] 250ms", r.peers, r.probe)
				}
			},
		},
		{
			name: "toml file via env",
			env:  map[string]string{"PLEIADES_CONFIG": tomlFile},
			check: func(t *testing.T, r result) {
				c := r.common
				if c.NodeID != 43 || c.DataDir != "/tmp/toml" || c.LogLevel != slog.LevelDebug || c.MaxFrameSize != 262144 {
					t.Errorf("got %+v; want toml values", c)
				}
				if !reflect.DeepEqual(r.peers, []string{"c:3"}) {
					t.Errorf("peers = %v; want [c:3]", r.peers)
				}
			},
		},
		{
			name: "flag beats env beats file beats default",
			env:  map[string]string{"PLEIADES_NODE_ID": "8", "PLEIADES_DATA_DIR": "/tmp/env"},
			args: []string{"--config", yamlFile, "--node-id", "9"},
			check: func(t *testing.T, r result) {
				c := r.common
				if c.NodeID != 9 {
					t.Errorf("NodeID = %d; want 9 (flag)", c.NodeID)
				}
				if c.DataDir != "/tmp/env" {
					t.Errorf("DataDir = %q; want /tmp/env (env)", c.DataDir)
				}
				if c.LogFormat != "json" {
					t.Errorf("LogFormat = %q; want json (file)", c.LogFormat)
				}
				if c.BusAddr != "127.0.0.1:7401" {
					t.Errorf("BusAddr = %q; want default", c.BusAddr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r, err := runApp(t, tt.args...)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			tt.check(t, r)
		})
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		file     string // file name; body in body
		body     string
		wantFlag string
	}{
		{name: "bad duration flag", args: []string{"--shutdown-timeout", "soon"}, wantFlag: "shutdown-timeout"},
		{name: "bad duration env", env: map[string]string{"PLEIADES_SHUTDOWN_TIMEOUT": "soon"}, wantFlag: "shutdown-timeout"},
		{name: "negative timeout", args: []string{"--shutdown-timeout", "-1s"}, wantFlag: "shutdown-timeout"},
		{name: "unknown log format", args: []string{"--log-format", "xml"}, wantFlag: "log-format"},
		{name: "unknown log level", args: []string{"--log-level", "loud"}, wantFlag: "log-level"},
		{name: "bad bus address", args: []string{"--bus-addr", "localhost"}, wantFlag: "bus-addr"},
		{name: "bad admin port", args: []string{"--admin-addr", "127.0.0.1:http99"}, wantFlag: "admin-addr"},
		{name: "tiny frame", args: []string{"--max-frame-size", "10"}, wantFlag: "max-frame-size"},
		{name: "frame under the calls stream's requests", args: []string{"--max-frame-size", "65536"}, wantFlag: "max-frame-size"},
		{name: "bad node id", args: []string{"--node-id", "-3"}, wantFlag: "node-id"},
		{name: "unknown flag", args: []string{"--nope"}, wantFlag: "nope"},
		{name: "unknown key in file", file: "c.yaml", body: "data-dir: x\nbogus-key: 1\n", wantFlag: "bogus-key"},
		{name: "malformed yaml", file: "c.yaml", body: "data-dir: [unclosed\n", wantFlag: "config"},
		{name: "malformed toml", file: "c.toml", body: "data-dir = \n", wantFlag: "config"},
		{name: "bad value in file", file: "c.toml", body: "shutdown-timeout = \"later\"\n", wantFlag: "shutdown-timeout"},
		{name: "missing file", args: []string{"--config", "/nonexistent/pleiades.yaml"}, wantFlag: "config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := tt.args
			if tt.file != "" {
				args = append(args, "--config", writeFile(t, tt.file, tt.body))
			}
			_, err := runApp(t, args...)
			if err == nil {
				t.Fatalf("run(%q) = nil error; want one naming %q", args, tt.wantFlag)
			}
			if !strings.Contains(err.Error(), tt.wantFlag) {
				t.Errorf("run(%q) error = %q; want it to name %q", args, err, tt.wantFlag)
			}
		})
	}
}

func TestFlagErrorType(t *testing.T) {
	_, err := runApp(t, "--log-format", "xml")
	var fe *FlagError
	if !errors.As(err, &fe) || fe.Flag != FlagLogFormat {
		t.Fatalf("error %v; want *FlagError for log-format", err)
	}
}

func TestHelpShowsDefaultsAndEnv(t *testing.T) {
	app := NewApp("testd", "test daemon", CommonFlags("127.0.0.1:7401", "127.0.0.1:7501"), func(*cli.Context) error { return nil })
	var out strings.Builder
	app.Writer = &out
	if err := app.Run([]string{"testd", "--help"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PLEIADES_DATA_DIR", "PLEIADES_SHUTDOWN_TIMEOUT", "PLEIADES_CONFIG", `default: "./data"`, "default: 10s", "127.0.0.1:7401"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPrepareCommands(t *testing.T) {
	file := writeFile(t, "c.yaml", "output: json\naddr: 127.0.0.1:9\n")
	var output, addr string
	app := &cli.App{
		Name:  "pleiades",
		Flags: []cli.Flag{&cli.StringFlag{Name: "output", Value: "table"}},
		Commands: []*cli.Command{{
			Name:  "status",
			Flags: []cli.Flag{&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7500"}},
			Action: func(c *cli.Context) error {
				output, addr = c.String("output"), c.String("addr")
				return nil
			},
		}},
	}
	Prepare(app)
	app.Writer = io.Discard
	t.Setenv("PLEIADES_ADDR", "127.0.0.1:8")
	if err := app.Run([]string{"pleiades", "--config", file, "status"}); err != nil {
		t.Fatal(err)
	}
	if output != "json" || addr != "127.0.0.1:8" {
		t.Errorf("output, addr = %q, %q; want json (file), 127.0.0.1:8 (env)", output, addr)
	}
}

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"data-dir": "PLEIADES_DATA_DIR", "node-id": "PLEIADES_NODE_ID", "dev": "PLEIADES_DEV"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestAddr(t *testing.T) {
	flags := []cli.Flag{&cli.StringFlag{Name: "raft-addr", Value: "127.0.0.1:7402"}}
	for _, tt := range []struct {
		args    []string
		want    string
		wantErr bool
	}{
		{nil, "127.0.0.1:7402", false},
		{[]string{"--raft-addr", "10.0.0.1:9"}, "10.0.0.1:9", false},
		{[]string{"--raft-addr", "10.0.0.1"}, "", true},
	} {
		var got string
		var gotErr error
		app := NewApp("x", "", flags, func(c *cli.Context) error {
			got, gotErr = Addr(c, "raft-addr")
			return nil
		})
		if err := app.Run(append([]string{"x"}, tt.args...)); err != nil {
			t.Fatal(err)
		}
		var fe *FlagError
		if tt.wantErr != (gotErr != nil) || (gotErr != nil && (!errors.As(gotErr, &fe) || fe.Flag != "raft-addr")) || got != tt.want {
			t.Errorf("Addr(%q) = %q, %v; want %q (error %v)", tt.args, got, gotErr, tt.want, tt.wantErr)
		}
	}
}

func TestOptionalAddrAndAddrList(t *testing.T) {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "stored-addr", Value: "127.0.0.1:7401"},
		&cli.StringSliceFlag{Name: "peers"},
	}
	for _, tt := range []struct {
		args      []string
		wantAddr  string
		wantPeers []string
		badFlag   string
	}{
		{args: nil, wantAddr: "127.0.0.1:7401"},
		{args: []string{"--stored-addr", ""}, wantAddr: ""},
		{args: []string{"--stored-addr", "stored"}, badFlag: "stored-addr"},
		{args: []string{"--peers", "10.0.0.1:1, 10.0.0.2:2,", "--peers", "10.0.0.3:3"}, wantAddr: "127.0.0.1:7401",
			wantPeers: []string{"10.0.0.1:1", "10.0.0.2:2", "10.0.0.3:3"}},
		{args: []string{"--peers", "10.0.0.1:1,raftd"}, badFlag: "peers"},
	} {
		var addr string
		var peers []string
		var err error
		app := NewApp("x", "", flags, func(c *cli.Context) error {
			if addr, err = OptionalAddr(c, "stored-addr"); err != nil {
				return nil
			}
			peers, err = AddrList(c, "peers")
			return nil
		})
		if rerr := app.Run(append([]string{"x"}, tt.args...)); rerr != nil {
			t.Fatal(rerr)
		}
		var fe *FlagError
		if tt.badFlag != "" {
			if !errors.As(err, &fe) || fe.Flag != tt.badFlag {
				t.Errorf("%q: error %v; want a FlagError naming --%s", tt.args, err, tt.badFlag)
			}
			continue
		}
		if err != nil || addr != tt.wantAddr || !slices.Equal(peers, tt.wantPeers) {
			t.Errorf("%q: addr %q, peers %q, error %v; want %q, %q", tt.args, addr, peers, err, tt.wantAddr, tt.wantPeers)
		}
	}
}

func TestAddrListOfStringFlag(t *testing.T) {
	var got []string
	var err error
	app := NewApp("x", "", []cli.Flag{&cli.StringFlag{Name: "addr"}}, func(c *cli.Context) error {
		got, err = AddrList(c, "addr")
		return nil
	})
	if rerr := app.Run([]string{"x", "--addr", "127.0.0.1:1, 127.0.0.1:2"}); rerr != nil {
		t.Fatal(rerr)
	}
	if want := []string{"127.0.0.1:1", "127.0.0.1:2"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("AddrList = %q, %v; want %q", got, err, want)
	}
}
