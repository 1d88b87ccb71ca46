package topk

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

func TestSummaryExactWhileItFits(t *testing.T) {
	t.Parallel()
	s := newSummary(64)
	want := map[string]int64{}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10_000 {
		k := "k" + strconv.Itoa(r.IntN(64))
		want[k]++
		s.add(k, Hash(k), -1)
	}
	got := map[string]int64{}
	s.drain(func(k string, n int64) { got[k] = n })
	if len(got) != len(want) {
		t.Fatalf("drained %d keys, want %d", len(got), len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("%s: got %d, want %d", k, got[k], n)
		}
	}
}

// TestSummaryBounds checks Space-Saving's bounds on skewed streams with far
// more keys than counters, and that the table finds every held key after
// many replacements (backward-shift deletion).
func TestSummaryBounds(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1, 7, 100, 1000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			s := newSummary(size)
			true_ := map[string]int64{}
			r := rand.New(rand.NewPCG(uint64(size), 3))
			for range 200_000 {
				var k string
				if r.IntN(4) == 0 {
					k = "heavy" + strconv.Itoa(r.IntN(5))
				} else {
					k = "light" + strconv.Itoa(int(r.ExpFloat64()*2000))
				}
				true_[k]++
				s.add(k, Hash(k), -1)
			}
			var sum int64
			for e, h := range s.ents {
				k := h.key
				if s.find(k, h.hash) != int32(e) {
					t.Fatalf("table lost key %q", k)
				}
				sum += s.counter(e)
				if s.counter(e) < true_[k] {
					t.Fatalf("%q: counter %d below its true count %d", k, s.counter(e), true_[k])
				}
			}
			if sum != s.total || s.total != 200_000 {
				t.Fatalf("counters sum to %d, total %d, want 200000", sum, s.total)
			}
			floor := s.floor()
			if floor > s.total/int64(size) {
				t.Fatalf("floor %d above total/size %d", floor, s.total/int64(size))
			}
			held := map[string]int64{}
			s.drain(func(k string, n int64) { held[k] = n })
			for k, f := range true_ {
				n := held[k]
				if n > f || n < f-floor {
					t.Fatalf("%q: drained %d, true %d, floor %d", k, n, f, floor)
				}
				if f > 200_000/int64(size) && n == 0 {
					t.Fatalf("%q has %d > total/size requests but was not held", k, f)
				}
			}
			if len(s.ents) != 0 || s.total != 0 {
				t.Fatal("drain left entries behind")
			}
		})
	}
}

func TestCountsReduce(t *testing.T) {
	t.Parallel()
	c := newCounts(10)
	true_ := map[string]int64{}
	var mass int64
	r := rand.New(rand.NewPCG(5, 6))
	for range 50_000 {
		k := strconv.Itoa(int(r.ExpFloat64() * 30))
		n := int64(1 + r.IntN(3))
		true_[k] += n
		mass += n
		c.add(k, n)
	}
	c.total = mass
	c.reduce()
	if len(c.m) > 10 {
		t.Fatalf("holds %d keys after reduce, want at most 10", len(c.m))
	}
	for k, f := range true_ {
		if n := c.m[k]; n > f || n < f-mass/11 {
			t.Fatalf("%s: count %d, true %d, allowed loss %d", k, n, f, mass/11)
		}
	}
}

func TestSketchCount(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 4, 1000, 100_000} {
		var s Sketch
		for i := range n {
			s.Add(Hash("key-" + strconv.Itoa(i)))
			s.Add(Hash("key-" + strconv.Itoa(i))) // repeats do not count
		}
		got := s.Count()
		if diff := float64(got - int64(n)); diff > 0.03*float64(n)+0.5 || -diff > 0.03*float64(n)+0.5 {
			t.Errorf("%d distinct keys: estimate %d", n, got)
		}
		var back Sketch
		if !back.ReadDense(s.AppendDense(nil)) || back != s {
			t.Errorf("%d keys: the dense encoding does not round-trip", n)
		}
	}
}

func policy(t testing.TB, window time.Duration) *limiter.Policy {
	p := &limiter.Policy{Name: "p", Limit: 1 << 40, Window: window}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestGuaranteeAdversarial holds the tracker to its guarantee on traffic
// built to defeat it: heavy keys arrive first and are then buried under
// many light keys (which evict them from every summary), each heavy key
// is spread thinly over several processes and several slots, and the
// processes see very different volumes. Every key with more than T/K
// requests must rank within the 2K best candidates of the merged views,
// with an estimate at most T/2K below its true count and never above it.
func TestGuaranteeAdversarial(t *testing.T) {
	t.Parallel()
	const k = 50
	p := policy(t, 10*time.Second) // slots of 1s
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	procs := []*Tracker{New(k, false), New(k, false), New(k, false)}
	var views [][]Entry
	true_ := map[string]int64{}
	var total int64
	r := rand.New(rand.NewPCG(7, 8))
	observe := func(proc int, key string, now int64) {
		procs[proc].Observe(p, key, now)
		true_[key]++
		total++
	}
	light := 0
	for sec := range int64(10) {
		now := start + sec*int64(time.Second)
		// Heavy keys first, spread over the processes.
		for h := range 10 {
			for i := range 50 + 30*h {
				observe((h+i)%3, "heavy-"+strconv.Itoa(h), now)
			}
		}
		// Then a flood of light keys, mostly on process 0.
		for range 6000 {
			proc := 0
			if r.IntN(10) == 0 {
				proc = 1 + r.IntN(2)
			}
			observe(proc, "light-"+strconv.Itoa(light), now+int64(time.Millisecond))
			if r.IntN(3) > 0 {
				light++
			}
		}
		for _, tr := range procs {
			tr.Flush(now+int64(500*time.Millisecond), func(_ *limiter.Policy, vs []SlotView) {
				for _, v := range vs {
					views = append(views, v.Entries)
				}
			})
		}
	}
	// Views of the same slot are overwritten by later ones in Redis; here
	// every view is published once per slot since each Flush ends a slot.
	cands := Merge(views...)
	rank := map[string]int{}
	est := map[string]int64{}
	for i, e := range cands {
		rank[e.Key], est[e.Key] = i, e.N
	}
	checked := 0
	for key, f := range true_ {
		if e, ok := est[key]; ok && e > f {
			t.Fatalf("%s: estimate %d above its true count %d", key, e, f)
		}
		if f*k <= total {
			continue
		}
		checked++
		i, ok := rank[key]
		if !ok || i >= 2*k {
			t.Fatalf("%s has %d of %d requests (> T/K = %d) but ranks %d (held %v) among %d candidates", key, f, total, total/k, i, ok, len(cands))
		}
		if est[key] < f-total/(2*k) {
			t.Fatalf("%s: estimate %d more than T/2K = %d below its true count %d", key, est[key], total/(2*k), f)
		}
	}
	if checked < 5 {
		t.Fatalf("only %d keys above T/K = %d: the traffic does not test the guarantee", checked, total/k)
	}
	t.Logf("%d requests, %d keys above T/K, %d candidates", total, checked, len(cands))
}

func TestReads(t *testing.T) {
	t.Parallel()
	tr := New(10, false) // threshold total/20
	cands := []Entry{{"a", 900}, {"b", 60}, {"c", 51}, {"d", 50}, {"e", 3}, {"f", 1}}
	for _, tc := range []struct {
		n     int
		total int64
		want  int
	}{
		{1, 1000, 3},  // a, b and c are above 1000/20
		{5, 1000, 5},  // n
		{10, 1000, 6}, // every candidate
		{1, 40, 5},    // a small total: all but f are above 40/20
	} {
		if got := tr.Reads(tc.n, tc.total, cands); got != tc.want {
			t.Errorf("Reads(%d, %d): %d, want %d", tc.n, tc.total, got, tc.want)
		}
	}
	many := make([]Entry, 100)
	for i := range many {
		many[i] = Entry{strconv.Itoa(i), 1000}
	}
	if got := tr.Reads(1, 1000, many); got != 20 {
		t.Errorf("Reads of 100 candidates above the threshold: %d, want 2K = 20", got)
	}
}

func TestSpan(t *testing.T) {
	t.Parallel()
	p := policy(t, time.Minute)
	now := int64(1000*time.Minute + 30*time.Second)
	first, last := Span(p, now)
	if l := SlotLen(p); l != 6*time.Second || last-first != 10 {
		t.Fatalf("slot %v, span %d..%d", l, first, last)
	}
	if p := policy(t, 2*time.Second); SlotLen(p) != time.Second {
		t.Fatalf("a 2s window has slots of %v, want 1s", SlotLen(p))
	}
}

// cpuTime is the process's user and system CPU time: on a shared machine
// it says more about a benchmark's cost than the wall clock does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkObserve measures the per-request cost of the busiest-key
// summary over 100,000 distinct keys (every request a new key for its
// stripe: the eviction path). cpu-ns/op is CPU time, not wall time.
func BenchmarkObserve(b *testing.B) {
	p := policy(b, time.Minute)
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("203.0.113.%d/%d", i%256, i)
	}
	now := time.Now().UnixNano()
	b.Run("serial", func(b *testing.B) {
		tr := New(0, false)
		b.ReportAllocs()
		i := 0
		c0 := cpuTime()
		for b.Loop() {
			tr.Observe(p, keys[i%len(keys)], now)
			i++
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel", func(b *testing.B) {
		tr := New(0, false)
		b.ReportAllocs()
		c0 := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(keys))
			for pb.Next() {
				tr.Observe(p, keys[i%len(keys)], now)
				i++
			}
		})
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
	// 4096 keys, each held by its stripe's summary: the path of a
	// gateway whose keys fit (and of benchmarks/decisions).
	b.Run("held", func(b *testing.B) {
		tr := New(0, false)
		b.ReportAllocs()
		c0 := cpuTime()
		i := 0
		for b.Loop() {
			tr.Observe(p, keys[i%4096], now)
			i++
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	})
}

// TestObserveSketchSkipsHeldKeys: the active-key estimate is the sketch of
// every key observed, though a key the summary already holds is not added
// again, including keys that lost their counter and came back, across a
// slot boundary.
func TestObserveSketchSkipsHeldKeys(t *testing.T) {
	t.Parallel()
	p := &limiter.Policy{Name: "p", Limit: 1, Window: time.Minute}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	tr := New(4, true) // 16 keys per stripe summary: keys are pushed out and return
	var want Sketch
	r := rand.New(rand.NewPCG(3, 4))
	now := int64(time.Hour)
	for i := range 50_000 {
		if i == 25_000 {
			now += int64(SlotLen(p)) // the next slot: summaries and sketches are emptied
		}
		k := "k" + strconv.Itoa(r.IntN(300))
		tr.Observe(p, k, now)
		want.Add(Hash(k))
	}
	tr.Flush(now, nil)
	_, active, total := tr.Candidates(p, now)
	if active != want.Count() || total != 50_000 {
		t.Fatalf("active %d total %d, want %d and 50000", active, total, want.Count())
	}
}

// TestObserveLockedHints: a tracker whose stripes are guarded by the
// caller's locks, counting with hints, lists exactly what a tracker with
// its own locks lists for the same requests, though hints go stale (a slot
// ends and the summaries are emptied, the policy is forgotten while idle
// and comes back), are passed for the wrong key, or come from another
// policy.
func TestObserveLockedHints(t *testing.T) {
	t.Parallel()
	p := policy(t, 10*time.Second) // slots of 1s
	q := &limiter.Policy{Name: "other", Limit: 1, Window: 10 * time.Second}
	if err := q.Validate(); err != nil {
		t.Fatal(err)
	}
	locks := make([]sync.Locker, 8)
	for i := range locks {
		locks[i] = new(sync.Mutex)
	}
	got, want := NewLocked(4, true, locks), New(4, true) // 16 keys per summary: all fit
	hints := map[string]*Hint{}
	r := rand.New(rand.NewPCG(9, 10))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	observe := func(pol *limiter.Policy, key string, hint *Hint) {
		h := Hash(key)
		l := locks[h%uint64(len(locks))]
		l.Lock()
		got.ObserveLocked(pol, key, h, now, hint)
		l.Unlock()
		want.Observe(pol, key, now)
	}
	for round := range 6 {
		for range 2000 {
			k := "k" + strconv.Itoa(r.IntN(40))
			if hints[k] == nil {
				hints[k] = new(Hint)
			}
			switch r.IntN(10) {
			case 0: // another key's hint
				observe(p, k, hints["k"+strconv.Itoa(r.IntN(40))])
			case 1: // another policy, with this key's hint of p
				observe(q, k, hints[k])
			default:
				observe(p, k, hints[k])
			}
			now += int64(time.Millisecond)
		}
		for _, tr := range []*Tracker{got, want} {
			tr.Flush(now, nil)
		}
		for _, pol := range []*limiter.Policy{p, q} {
			g, ga, gt := got.Candidates(pol, now)
			w, wa, wt := want.Candidates(pol, now)
			if fmt.Sprint(g) != fmt.Sprint(w) || ga != wa || gt != wt {
				t.Fatalf("round %d, %s: candidates %v (active %d, total %d), want %v (%d, %d)", round, pol.Name, g, ga, gt, w, wa, wt)
			}
		}
		if round == 2 { // idle past the window: both trackers forget the policies
			now += int64(time.Minute)
			for _, tr := range []*Tracker{got, want} {
				tr.Flush(now, nil)
				if c, _, _ := tr.Candidates(p, now); len(c) != 0 {
					t.Fatalf("after an idle minute: candidates %v, want none", c)
				}
			}
		}
	}
}

// TestObserveLockedRacesForget: counting under the caller's locks while
// Flush keeps forgetting the policy (the requests are an hour old, so each
// Flush drops them and finds the policy idle): no data race (under -race),
// no deadlock between the caller's locks and the tracker's, and the state
// that comes back counts exactly.
func TestObserveLockedRacesForget(t *testing.T) {
	t.Parallel()
	p := policy(t, 10*time.Second) // slots of 1s
	locks := make([]sync.Locker, 4)
	for i := range locks {
		locks[i] = new(sync.Mutex)
	}
	tr := NewLocked(50, true, locks)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var forgotten atomic.Int64
	stop := make(chan struct{})
	var flusher, wg sync.WaitGroup
	flusher.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				tr.Flush(now, nil)
				if len(*tr.policies.Load()) == 0 {
					forgotten.Add(1)
				}
			}
		}
	})
	for w := range 4 {
		wg.Go(func() {
			var hint Hint
			key := "k" + strconv.Itoa(w)
			h := Hash(key)
			l := locks[h%uint64(len(locks))]
			// Until Flush has found the policy gone 20 times (bounded,
			// in case it never does).
			for i := 0; forgotten.Load() < 20 && i < 1_000_000; i++ {
				l.Lock()
				tr.ObserveLocked(p, key, h, now-int64(time.Hour), &hint)
				l.Unlock()
				if i%16 == 0 {
					runtime.Gosched() // let Flush find every stripe empty
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flusher.Wait()
	if forgotten.Load() == 0 {
		t.Fatal("the policy was never forgotten: the test raced nothing")
	}
	for range 5 {
		tr.ObserveHash(p, "after", Hash("after"), now)
	}
	tr.Flush(now, nil)
	if cands, _, total := tr.Candidates(p, now); total != 5 || len(cands) != 1 || cands[0] != (Entry{"after", 5}) {
		t.Fatalf("after the race: %v, total %d, want [{after 5}] and 5", cands, total)
	}
}
