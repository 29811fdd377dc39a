//go:build e2edocker

package e2edocker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// daemons are a host's daemon services, in start order.
var daemons = []string{"stored", "clockd", "gossipd", "raftd", "workflowd", "msgd"}

// cluster is a compose project of hosts on a subnet.
type cluster struct {
	project string
	file    string
	hosts   int
	// subnet is "a.b.c." of the /24 the hosts live on: host k at .(10+k).
	subnet string
	// tag is the tag of the images under test.
	tag string
}

// docker runs the docker CLI and returns its trimmed standard output.
func docker(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker", args...)
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// compose runs docker-compose on the project.
func (c *cluster) compose(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker-compose", append([]string{"-p", c.project, "-f", c.file}, args...)...)
}

// generate writes the project's compose file with the pleiades image's
// own generator, so the file matches the images under test.
func (c *cluster) generate(ctx context.Context, dir string) error {
	out, err := docker(ctx, "run", "--rm", "pleiades/pleiades:"+c.tag, "deploy", "compose",
		"--hosts", fmt.Sprint(c.hosts), "--subnet", c.subnet+"0/24", "--publish-admin=false", "--tag", c.tag)
	if err != nil {
		return err
	}
	c.file = filepath.Join(dir, "docker-compose.yml")
	return os.WriteFile(c.file, []byte(out+"\n"), 0o644)
}

// ip is host k's address.
func (c *cluster) ip(k int) string { return fmt.Sprintf("%s%d", c.subnet, 10+k) }

// raftAddr is host k's raftd bus address.
func (c *cluster) raftAddr(k int) string { return c.ip(k) + ":7402" }

// raftAddrs lists every host's raftd.
func (c *cluster) raftAddrs() []string {
	var out []string
	for k := 1; k <= c.hosts; k++ {
		out = append(out, c.raftAddr(k))
	}
	return out
}

// container returns the id of a service's container (running or not).
func (c *cluster) container(ctx context.Context, service string) (string, error) {
	out, err := docker(ctx, "ps", "-a", "-q", "--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service="+service)
	if err != nil {
		return "", err
	}
	if out == "" || strings.Contains(out, "\n") {
		return "", fmt.Errorf("service %s: containers %q", service, out)
	}
	return out, nil
}

// hostServices are host k's services: its namespace holder, then its
// daemons in start order.
func hostServices(k int) []string {
	h := fmt.Sprintf("host%d", k)
	out := []string{h}
	for _, d := range daemons {
		out = append(out, h+"-"+d)
	}
	return out
}

// state returns a container's state and health ("running healthy").
func (c *cluster) state(ctx context.Context, service string) (string, error) {
	id, err := c.container(ctx, service)
	if err != nil {
		return "", err
	}
	return docker(ctx, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
}

// waitHealthy waits until every daemon of the hosts is running and
// healthy.
func (c *cluster) waitHealthy(ctx context.Context, hosts ...int) error {
	for {
		var bad []string
		for _, k := range hosts {
			for _, s := range hostServices(k)[1:] {
				st, err := c.state(ctx, s)
				if err != nil || st != "running healthy" {
					bad = append(bad, fmt.Sprintf("%s: %s %v", s, st, err))
				}
			}
		}
		if len(bad) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy: %s", strings.Join(bad, "; "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitExited waits until a one-shot service's container exited 0.
func (c *cluster) waitExited(ctx context.Context, service string) error {
	for {
		id, err := c.container(ctx, service)
		if err == nil {
			var st string
			st, err = docker(ctx, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id)
			if st == "exited 0" {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("%s: %s", service, st)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not complete: %v", service, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// certs copies the CLI's certificates out of its volume into dir.
func (c *cluster) certs(ctx context.Context, dir string) error {
	id, err := c.container(ctx, "cli-certs")
	if err != nil {
		return err
	}
	_, err = docker(ctx, "cp", id+":/data/certs/.", dir)
	return err
}

// network is the project's network.
func (c *cluster) network() string { return c.project + "_default" }

// remove removes every container, network and volume of the project,
// unpausing paused containers first; it works without the compose file.
func (c *cluster) remove(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	label := "label=com.docker.compose.project=" + c.project
	if ids, _ := docker(ctx, "ps", "-q", "--filter", label, "--filter", "status=paused"); ids != "" {
		_, _ = docker(ctx, append([]string{"unpause"}, strings.Fields(ids)...)...)
	}
	if ids, _ := docker(ctx, "ps", "-a", "-q", "--filter", label); ids != "" {
		if _, err := docker(ctx, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if ids, _ := docker(ctx, "network", "ls", "-q", "--filter", label); ids != "" {
		if _, err := docker(ctx, append([]string{"network", "rm"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if ids, _ := docker(ctx, "volume", "ls", "-q", "--filter", label); ids != "" {
		if _, err := docker(ctx, append([]string{"volume", "rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}
