//go:build fulldisk

package e2e

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/eventually"
	"github.com/pleiades-db/pleiades/shared/kvclient"
)

// TestDiskFullFollowerHeavy (make test-fulldisk) is TestDiskFullFollower
// with faults while node 2's disk is full: node 2's raftd is killed with
// SIGKILL (it starts again on the full disk), the leader of the written
// range is paused with SIGSTOP (node 2 acknowledges nothing it cannot
// write, so writes stall until SIGCONT rather than being acknowledged by
// a minority) and node 2 stays full until the leader's log is truncated
// past it, so it catches up by snapshot.
func TestDiskFullFollowerHeavy(t *testing.T) {
	diskFullFollower(t, 7200, func(c *devCluster, cl *kvclient.Client, prefix string, ws *writers) {
		rd, err := c.daemon(t, "node2/raftd")
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(rd.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		c.waitRestarted(t, "node2/raftd", rd.PID)
		t.Log("node 2's raftd started again on the full disk")

		leader, rangeID, err := c.leaderOf(cl, []byte(prefix+"/"))
		if err != nil {
			t.Fatal(err)
		}
		if leader != 2 {
			ld, err := c.daemon(t, fmt.Sprintf("node%d/raftd", leader))
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(ld.PID, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			paused := time.Now()
			time.Sleep(3 * time.Second)
			// With the leader paused and node 2 unable to write, the
			// range has one voter that can: nothing is acknowledged.
			if at, ok := ws.log.firstAckStartedAfter(paused.Add(500 * time.Millisecond)); ok {
				t.Errorf("a write to range %d acknowledged at %v with its leader paused and node 2 full", rangeID, at.Sub(paused))
			}
			if err := syscall.Kill(ld.PID, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			resumed := time.Now()
			eventually.NoError(t, 60*time.Second, "writes after SIGCONT", func() error {
				if _, ok := ws.log.firstAckStartedAfter(resumed); !ok {
					return errors.New("none yet")
				}
				return nil
			})
			t.Logf("node %d's raftd paused 3s: writes resumed %v after SIGCONT", leader, func() time.Duration {
				at, _ := ws.log.firstAckStartedAfter(resumed)
				return at.Sub(resumed).Round(time.Millisecond)
			}())
		}

		// Keep writing until the leader's log starts past node 2's.
		eventually.NoError(t, 180*time.Second, "the leader's log truncated past node 2", func() error {
			reps, err := c.replicas(cl, 5*time.Second)
			if err != nil {
				return err
			}
			var first, behind uint64
			for idx, rs := range reps {
				for _, r := range rs {
					if r.GetDescriptor_().GetRangeId() != rangeID {
						continue
					}
					if r.GetRaftState() == "leader" {
						first = r.GetFirstIndex()
					}
					if idx == 2 {
						behind = r.GetLastIndex()
					}
				}
			}
			if first == 0 || first <= behind+1 {
				return fmt.Errorf("leader's log starts at %d; node 2's ends at %d", first, behind)
			}
			return nil
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := cl.Ranges(ctx, c.nodes[1].RaftAddr); err != nil {
			t.Errorf("node 2's raftd does not answer: %v", err)
		}
	}, func(c *devCluster) {
		rd, err := c.daemon(t, "node2/raftd")
		if err != nil {
			t.Fatal(err)
		}
		if n := metric(t, rd.AdminAddr, "pleiades_raftd_snapshots_applied_total"); n < 1 {
			t.Errorf("node 2 installed %v snapshots; want at least 1 (the leader's log was truncated past it)", n)
		}
	})
}
