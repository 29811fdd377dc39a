package multiraft

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient/kvclienttest"
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
	h := kvclienttest.NewHistory()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 99))
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				node := c.ids[rng.IntN(len(c.ids))]
				s := c.store(node)
				if s == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				op := kvclienttest.Op{Kind: kvclienttest.OpGet, Key: keys[rng.IntN(len(keys))]}
				if rng.IntN(2) == 0 {
					op.Kind, op.Value = kvclienttest.OpPut, fmt.Sprintf("c%d-%d", client, seq)
				}
				actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
				call := time.Now()
				var out kvclienttest.Outcome
				var err error
				if op.Kind == kvclienttest.OpPut {
					_, err = s.Put(actx, &kvpb.PutRequest{Key: []byte(op.Key), Value: []byte(op.Value)})
				} else {
					var resp *kvpb.GetResponse
					resp, err = s.Get(actx, &kvpb.GetRequest{Key: []byte(op.Key)})
					out = kvclienttest.Outcome{Value: string(resp.GetValue().GetValue()), Found: resp.GetFound()}
				}
				ret := time.Now()
				acancel()
				if err != nil {
					// Refused before proposing (no leader, not leader,
					// peer unreachable): the put certainly did not apply.
					definite := (errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) && !errors.Is(err, ErrStopped)
					if op.Kind == kvclienttest.OpGet || definite {
						time.Sleep(2 * time.Millisecond)
						continue // no effect
					}
					out.Unknown = true // a put may have applied
				}
				h.Add(client, op, out, call, ret)
			}
		}()
	}
	c.net.SetLoss(0.03)
	c.net.SetDelay(2 * time.Millisecond)
	rng := rand.New(rand.NewPCG(3, 3))
	for round := range 4 {
		time.Sleep(200 * time.Millisecond)
		victim := c.leaderOf(uint64(2 + rng.IntN(2)))
		if victim == 0 {
			victim = c.ids[round%3]
		}
		switch round % 2 {
		case 0:
			c.net.Isolate(victim, c.ids)
			time.Sleep(300 * time.Millisecond)
			c.net.Heal()
		case 1:
			c.crash(victim)
			time.Sleep(200 * time.Millisecond)
			c.start(victim)
		}
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	gets, puts, _, unknown := h.Counts()
	t.Logf("history: %d puts (%d of unknown outcome), %d gets", puts, unknown, gets)

	if gets < 50 || puts < 50 {
		t.Fatalf("history too small to mean anything: %d puts, %d gets", puts, gets)
	}
	switch res, bad := h.Check(30 * time.Second); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("linearizability check timed out (no violation found)")
	default:
		t.Fatalf("history is not linearizable (%s) on keys %v", res, bad)
	}
}
