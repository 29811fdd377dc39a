package multiraft

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// TestLinearizableUnderFaults records a history of gets and puts from
// concurrent clients on every node while the network loses and delays
// messages, leaders are isolated and nodes crash and restart, then checks
// it with porcupine. Puts whose outcome is unknown count as possibly
// applied at any time after their call.
func TestLinearizableUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault run")
	}
	c := newTestCluster(t, 3, &kvpb.InitRequest{InitialRanges: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := c.put(ctx, "a-warm", "x"); err != nil {
		t.Fatal(err)
	}
	keys := []string{"a1", "a2", "z1", "z2"}
	h, stop, wait := c.recordHistory(ctx, keys, 6)
	c.net.SetLoss(0.03)
	c.net.SetDelay(2 * time.Millisecond)
	c.isolateOrCrashLeaders(4, 3, 200*time.Millisecond, 300*time.Millisecond, 200*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wait()
	c.checkHistory(t, h)
}

// isolateOrCrashLeaders runs rounds of faults, each after a pause: the
// leader of range 2 or 3 (picked by seed; another node when it has
// none) is cut off from the others for isolated, then, the next round,
// crashed and started again after down.
func (c *testCluster) isolateOrCrashLeaders(rounds int, seed uint64, pause, isolated, down time.Duration) {
	rng := rand.New(rand.NewPCG(seed, seed))
	for round := range rounds {
		time.Sleep(pause)
		victim := c.leaderOf(uint64(2 + rng.IntN(2)))
		if victim == 0 {
			victim = c.ids[round%3]
		}
		switch round % 2 {
		case 0:
			c.net.Isolate(victim, c.ids)
			time.Sleep(isolated)
			c.net.Heal()
		case 1:
			c.crash(victim)
			time.Sleep(down)
			c.start(victim)
		}
	}
}
