package limitertest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// fleet returns the harness's store and, where the harness has peers, two
// more stores on the same backend.
func fleet(t *testing.T, h *Harness) []limiter.Store {
	stores := []limiter.Store{h.Store}
	if h.Peer != nil {
		stores = append(stores, h.Peer(t), h.Peer(t))
	}
	return stores
}

// flushAll makes every store's counts visible to the others' listings, as
// their periodic flushes would.
func flushAll(t *testing.T, stores []limiter.Store) {
	t.Helper()
	for _, s := range stores {
		if f, ok := s.(limiter.KeyFlusher); ok {
			if err := f.FlushKeys(context.Background()); err != nil {
				t.Fatalf("FlushKeys: %v", err)
			}
		}
	}
}

// MustKeys lists p's busiest keys and fails the test on error or when a
// key is listed twice.
func MustKeys(t testing.TB, s limiter.Store, p *limiter.Policy, n int) limiter.KeyList {
	t.Helper()
	list, err := s.Keys(context.Background(), p, n)
	if err != nil {
		t.Fatalf("Keys(%s, %d): %v", p.Name, n, err)
	}
	seen := map[string]bool{}
	for _, u := range list.Keys {
		if seen[u.Key] {
			t.Fatalf("Keys(%s, %d): %q listed twice: %+v", p.Name, n, u.Key, list.Keys)
		}
		seen[u.Key] = true
	}
	return list
}

// testKeysFleet: three stores on one backend, as three gateways. Every
// store lists each key once with the fleet's summed usage, the busiest
// first, and the same active-key estimate.
func testKeysFleet(t *testing.T, h *Harness) {
	if h.Peer == nil {
		t.Skip("the harness has no peers")
	}
	stores := fleet(t, h)
	for _, alg := range algorithms {
		t.Run(string(alg), func(t *testing.T) {
			p := Policy(t, "fleet-"+string(alg), alg, 1000, time.Hour)
			// alpha: 2 through each; gamma: 4 through the last; beta: 1 through each.
			for _, s := range stores {
				for range 2 {
					MustAllow(t, s, p, "alpha", 1)
				}
				MustAllow(t, s, p, "beta", 1)
			}
			for range 4 {
				MustAllow(t, stores[2], p, "gamma", 1)
			}
			flushAll(t, stores)
			want := []struct {
				key   string
				count int64
			}{{"alpha", 6}, {"gamma", 4}, {"beta", 3}}
			for i, s := range stores {
				list := MustKeys(t, s, p, 3)
				if len(list.Keys) != len(want) {
					t.Fatalf("store %d: %d keys %+v, want alpha 6, gamma 4, beta 3", i, len(list.Keys), list.Keys)
				}
				for j, w := range want {
					u := list.Keys[j]
					if alg == limiter.GCRA && u.Count == w.count+1 {
						// gcra's count is its backlog in emission intervals,
						// rounded up: a clock a nanosecond on adds one.
						u.Count, u.Remaining = w.count, u.Remaining+1
					}
					if u.Key != w.key || u.Count != w.count || u.Remaining != 1000-w.count {
						t.Fatalf("store %d: key %d is %+v, want %s with count %d", i, j, u, w.key, w.count)
					}
				}
				if list.ActiveKeys != 3 {
					t.Fatalf("store %d: active_keys %d, want 3", i, list.ActiveKeys)
				}
				if one := MustKeys(t, s, p, 1); len(one.Keys) != 1 || one.Keys[0].Key != "alpha" {
					t.Fatalf("store %d: limit 1 lists %+v, want alpha alone", i, one.Keys)
				}
			}
			// More requests after a flush replace, not add to, the
			// store's view of the slot.
			for range 2 {
				MustAllow(t, stores[0], p, "beta", 1)
			}
			flushAll(t, stores)
			list := MustKeys(t, stores[1], p, 3)
			if list.Keys[1].Key != "beta" || list.Keys[2].Key != "gamma" {
				t.Fatalf("after two more beta: %+v, want alpha, beta (5), gamma", list.Keys)
			}
		})
	}
}

// testKeysGuarantee holds the stores to the stated guarantee on traffic
// built against it: the heavy keys come first, spread thinly over every
// store of the fleet, then a flood of light keys arrives that evicts them
// from every in-process summary. Each heavy key has more than T/K of the
// T requests, so each must be listed with its exact summed count.
func testKeysGuarantee(t *testing.T, h *Harness) {
	stores := fleet(t, h)
	k := h.TopK
	if k == 0 {
		k = topk.DefaultK
	}
	p := Policy(t, "guarantee", limiter.SlidingWindow, 1<<40, time.Hour)
	const heavy, each = 5, 520
	light := 1400 * k / 8 // T = 4000 x K/8: T/K = 500 < each
	i := 0
	for range each {
		for hk := range heavy {
			MustAllow(t, stores[i%len(stores)], p, "heavy-"+strconv.Itoa(hk), 1)
			i++
		}
	}
	for l := range light {
		s := stores[0]
		if l%10 == 9 {
			s = stores[len(stores)-1]
		}
		MustAllow(t, s, p, fmt.Sprintf("light-%d", l), 1)
	}
	flushAll(t, stores)
	total := int64(heavy*each + light)
	if int64(each)*int64(k) <= total {
		t.Fatalf("test traffic: %d of %d requests is not above T/K (K=%d)", each, total, k)
	}
	for si, s := range stores {
		list := MustKeys(t, s, p, heavy)
		if len(list.Keys) != heavy {
			t.Fatalf("store %d: %d keys listed, want the %d heavy ones: %+v", si, len(list.Keys), heavy, list.Keys)
		}
		for j, u := range list.Keys { // equal counts: ordered by key
			if u.Key != "heavy-"+strconv.Itoa(j) || u.Count != each {
				t.Fatalf("store %d: listing %+v, want every heavy key with count %d", si, list.Keys, each)
			}
		}
		if got, want := list.ActiveKeys, int64(heavy+light); got < want*97/100 || got > want*103/100 {
			t.Fatalf("store %d: active_keys %d, want %d within 3%%", si, got, want)
		}
	}
}

// testKeysCommands: a listing's Redis commands are bounded by N, K and the
// number of stores, and do not grow with the number of active keys.
func testKeysCommands(t *testing.T, h *Harness) {
	if h.Commands == nil {
		t.Skip("the harness does not count Redis commands")
	}
	k := h.TopK
	if k == 0 {
		k = topk.DefaultK
	}
	p := Policy(t, "commands", limiter.SlidingWindow, 1<<40, time.Hour)
	listing := func(active int) int64 {
		for i := range active {
			MustAllow(t, h.Store, p, fmt.Sprintf("k%d-%d", active, i), 1)
		}
		MustAllow(t, h.Store, p, "busy", 1)
		flushAll(t, []limiter.Store{h.Store})
		before := h.Commands()
		list := MustKeys(t, h.Store, p, 10)
		n := h.Commands() - before
		if len(list.Keys) != 10 {
			t.Fatalf("%d active keys: listed %d, want 10", active, len(list.Keys))
		}
		return n
	}
	small := listing(50)
	large := listing(2000)
	// One read of the processes, 3 commands per shard, a PFCOUNT and an
	// MGET, then at most two commands per key read.
	bound := int64(3+3*8) + 2*int64(max(10, 2*k))
	t.Logf("a listing of 10 keys: %d commands with 51 active keys, %d with 2,051 (bound %d)", small, large, bound)
	if large > bound || small > bound {
		t.Fatalf("a listing took %d and %d commands, more than %d", small, large, bound)
	}
	if large > small {
		t.Fatalf("a listing took %d commands with 2,051 active keys but %d with 51: it grows with the keys", large, small)
	}
}
