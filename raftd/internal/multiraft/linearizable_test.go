package multiraft

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/kvpb"
)

// regInput is one operation on a register: a get, or a put of value.
type regInput struct {
	key   string
	put   bool
	value string
}

// regOutput is a get's result.
type regOutput struct {
	value string
	found bool
}

// registerModel is a map of independent registers, partitioned per key.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(regInput).key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return regOutput{} },
	Step: func(state, input, output any) (bool, any) {
		st, in := state.(regOutput), input.(regInput)
		if in.put {
			return true, regOutput{value: in.value, found: true}
		}
		out := output.(regOutput)
		return out == st, st
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %v", in.key, output)
	},
}

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
	start := time.Now()
	var mu sync.Mutex
	var history []porcupine.Operation
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
				in := regInput{key: keys[rng.IntN(len(keys))], put: rng.IntN(2) == 0}
				if in.put {
					in.value = fmt.Sprintf("c%d-%d", client, seq)
				}
				actx, acancel := context.WithTimeout(ctx, 300*time.Millisecond)
				call := time.Since(start).Nanoseconds()
				var out regOutput
				var err error
				if in.put {
					_, err = s.Put(actx, &kvpb.PutRequest{Key: []byte(in.key), Value: []byte(in.value)})
				} else {
					var resp *kvpb.GetResponse
					resp, err = s.Get(actx, &kvpb.GetRequest{Key: []byte(in.key)})
					out = regOutput{value: string(resp.GetValue().GetValue()), found: resp.GetFound()}
				}
				ret := time.Since(start).Nanoseconds()
				acancel()
				if err != nil {
					// Refused before proposing (no leader, not leader,
					// peer unreachable): the put certainly did not apply.
					definite := (errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrNotLeader)) && !errors.Is(err, ErrStopped)
					if !in.put || definite {
						time.Sleep(2 * time.Millisecond)
						continue // no effect
					}
					ret = math.MaxInt64 // a put may have applied
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
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
	puts, gets := 0, 0
	for _, op := range history {
		if op.Input.(regInput).put {
			puts++
		} else {
			gets++
		}
	}
	t.Logf("history: %d puts, %d gets", puts, gets)

	if gets < 50 || puts < 50 {
		t.Fatalf("history too small to mean anything: %d puts, %d gets", puts, gets)
	}
	switch res := porcupine.CheckOperationsTimeout(registerModel, history, 30*time.Second); res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Log("linearizability check timed out (no violation found)")
	default:
		t.Fatalf("history is not linearizable (%s)", res)
	}
}

// TestRegisterModelCatchesStaleRead shows the checker rejects a read of an
// overwritten value, so the test above can fail.
func TestRegisterModelCatchesStaleRead(t *testing.T) {
	h := []porcupine.Operation{
		{Input: regInput{key: "k", put: true, value: "1"}, Call: 0, Return: 1},
		{Input: regInput{key: "k", put: true, value: "2"}, Call: 2, Return: 3},
		{Input: regInput{key: "k"}, Output: regOutput{value: "1", found: true}, Call: 4, Return: 5},
	}
	if porcupine.CheckOperations(registerModel, h) {
		t.Error("stale read accepted")
	}
	if !porcupine.CheckOperations(registerModel, h[:2]) {
		t.Error("plain history rejected")
	}
}
