// Package topk finds the busiest keys of each policy in bounded memory and
// bounded work, and estimates how many distinct keys are active: the
// per-process half of a store's key listing (see limiter.Store.Keys).
//
// A Tracker counts every request in process: per policy, its stripes
// (picked by the low bits of the key's hash: Hash, or for a tracker whose
// views stay in process, the store's own, see ObserveLocked) each hold a
// Space-Saving summary of 4K keys and their share of a HyperLogLog Sketch.
// A stripe is guarded by a lock: one of the tracker's own four (New), or
// one of the caller's (NewLocked), so that a store that holds a lock for
// the key anyway counts the request under it and takes no second lock.
// Observe allocates nothing and costs under 100ns of CPU
// (BenchmarkObserve). Time is cut into slots of a tenth of the policy's
// window (at least a second); Flush moves the
// stripes' counts into a Misra-Gries summary per slot (8K-1 keys) and
// returns each changed slot's view: its keys above total/8K, and at least
// its 100 busiest of the keys its summaries still hold. A full summary
// drops every key tied at its smallest count, so a slot that saw more keys
// than it holds, most of them once, views few or none of those (a listing
// then shows fewer keys than asked for; the guarantee below still holds).
// The memory store lists from the views it keeps; the
// Redis store writes them to Redis, where every gateway's views of a slot
// are summed.
//
// # Guarantee
//
// Let T be the requests of a policy in the slots that overlap its window
// (the window and at most one slot before it), summed over every process.
// A key's summed count (its estimate) is never above its true count in
// those slots, and falls short of it by at most T/4K (Space-Saving) plus
// T/8K (Misra-Gries) plus T/8K (the view's threshold): T/2K in all. The
// estimates add up to at most T, so fewer than 2K keys have an estimate
// above T/2K. A listing reads the exact usage of the N best estimates and
// of every estimate above T/2K (Reads): so every key with more than T/K
// requests is read exactly, and it is listed unless N listed keys have at
// least as many.
package topk

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/sluice-gateway/sluice/limiter"
)

// DefaultK is the K of a Tracker made with k <= 0.
const DefaultK = 500

// Keep is how many keys a slot's view holds at least (when its summary
// still holds them), so that a listing can fill a page with keys below the
// threshold.
const Keep = 100

// stripeCount is the number of stripes of a Tracker made with New. (16
// measured no faster in benchmarks/decisions at 64 callers, and hold four
// times the counters. Counting a request whose stripe is busy in a free
// one, which the bounds allow, measured slower: every stripe then sees most
// keys and evicts.)
const stripeCount = 4

// SlotLen is the length of the slots of p: a tenth of its window, at least
// one second.
func SlotLen(p *limiter.Policy) time.Duration { return max(p.Window/10, time.Second) }

// Span returns the first and last slots that overlap the window ending at
// now (ns since the epoch).
func Span(p *limiter.Policy, now int64) (first, last int64) {
	l := int64(SlotLen(p))
	return (now - int64(p.Window)) / l, now / l
}

// Tracker counts requests per policy and key in process. It is safe for
// concurrent use; the zero value is not usable, call New or NewLocked.
type Tracker struct {
	k    int
	keep bool // keep slot views for listing from them (the memory store)
	// locks guard the stripes: the key whose hash is h is counted in stripe
	// h&mask under locks[h&mask]; len(locks) is a power of two.
	locks []sync.Locker
	mask  uint64
	// mu serialises changes to policies and byPointer. It is never held
	// while taking a stripe's lock; a stripe's lock may be held while
	// taking it.
	mu       sync.Mutex
	policies atomic.Pointer[map[shape]*policyState]
	// byPointer finds a policy's state by the *limiter.Policy that requests
	// carry, which hashes faster than its shape; a reload brings new
	// pointers, which are added as they come.
	byPointer atomic.Pointer[map[*limiter.Policy]*policyState]
}

// shape identifies a policy the way stores key its state: a policy whose
// algorithm or window changes starts afresh.
type shape struct {
	name      string
	algorithm limiter.Algorithm
	window    time.Duration
}

func shapeOf(p *limiter.Policy) shape { return shape{p.Name, p.Algorithm, p.Window} }

type policyState struct {
	policy  *limiter.Policy
	shape   shape
	slotLen int64
	stripes []stripe // one per lock of the tracker

	// alive is false once forgotten; it changes only under every stripe's
	// lock, so a caller holding one reads a settled value.
	alive atomic.Bool

	mu    sync.Mutex // guards slots and open
	slots map[int64]*slotState
	open  int64 // slots before it were handed over and forgotten
}

// stripe is the part of a policy's counts guarded by one lock.
type stripe struct {
	stripeData
	// Keep stripes, which calls under different locks write at once, on
	// separate cache lines (and line pairs, which prefetchers fetch
	// together), however the array is aligned.
	_ [stripePad]byte
}

// stripePad rounds a stripe up to a multiple of 128 bytes.
const stripePad = (128 - unsafe.Sizeof(stripeData{})%128) % 128

// stripeData is a stripe without its padding.
type stripeData struct {
	slot   int64
	end    int64 // the end of slot (ns); zero before the first request
	sum    summary
	sketch part // nil until the stripe's first key
}

// ownLock is a mutex of a Tracker made with New, alone on its cache lines.
type ownLock struct {
	sync.Mutex
	_ [128 - unsafe.Sizeof(sync.Mutex{})]byte
}

type slotState struct {
	counts *counts // nil once the slot is over and published
	sketch Sketch
	view   []Entry
	total  int64 // requests counted
	dirty  bool
}

// New returns a Tracker with parameter k (the guarantee's K; k <= 0 means
// DefaultK) whose stripes have their own locks: call Observe or
// ObserveHash. With keep, slot views stay in process for Candidates and
// Active; without, Flush hands them over and forgets finished slots.
func New(k int, keep bool) *Tracker {
	locks := make([]sync.Locker, stripeCount)
	own := make([]ownLock, stripeCount)
	for i := range locks {
		locks[i] = &own[i]
	}
	return NewLocked(k, keep, locks)
}

// NewLocked is New for a caller that serialises the counting itself: the
// tracker has one stripe per lock (len(locks) must be a power of two, at
// most Registers), a key whose hash is h is counted in stripe
// h%len(locks), and a caller of ObserveLocked holds that stripe's lock.
// Flush takes each lock in turn, and takes no lock of the caller's while
// holding one, so the caller may hold a lock of its own while taking these.
// Each stripe holds up to 4K keys between Flushes: more stripes hold more
// keys exactly, in more memory.
func NewLocked(k int, keep bool, locks []sync.Locker) *Tracker {
	n := len(locks)
	if n == 0 || n&(n-1) != 0 || n > Registers {
		panic("topk: the number of locks must be a power of two, at most Registers")
	}
	if k <= 0 {
		k = DefaultK
	}
	t := &Tracker{k: k, keep: keep, locks: locks, mask: uint64(n - 1)}
	m := map[shape]*policyState{}
	t.policies.Store(&m)
	bp := map[*limiter.Policy]*policyState{}
	t.byPointer.Store(&bp)
	return t
}

// K returns the tracker's K.
func (t *Tracker) K() int { return t.k }

// state returns the live state of p, adding it when p's shape has none.
func (t *Tracker) state(p *limiter.Policy) *policyState {
	if ps := (*t.byPointer.Load())[p]; ps != nil && ps.live() {
		return ps
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sh := shapeOf(p)
	ps := (*t.policies.Load())[sh]
	if ps == nil || !ps.live() {
		ps = t.add(sh, p)
	}
	oldp := *t.byPointer.Load()
	bp := make(map[*limiter.Policy]*policyState, len(oldp)+1)
	for k, v := range oldp {
		if v.live() {
			bp[k] = v
		}
	}
	bp[p] = ps
	t.byPointer.Store(&bp)
	return ps
}

// add makes the state of a new policy shape; t.mu must be held.
func (t *Tracker) add(sh shape, p *limiter.Policy) *policyState {
	old := *t.policies.Load()
	ps := &policyState{policy: p, shape: sh, slotLen: int64(SlotLen(p)), slots: map[int64]*slotState{},
		stripes: make([]stripe, len(t.locks))}
	ps.alive.Store(true)
	for i := range ps.stripes {
		ps.stripes[i].sum.init(4 * t.k)
	}
	m := make(map[shape]*policyState, len(old)+1)
	for k, v := range old {
		if v.live() {
			m[k] = v
		}
	}
	m[sh] = ps
	t.policies.Store(&m)
	return ps
}

func (ps *policyState) live() bool { return ps.alive.Load() }

// Observe counts one request for storeKey under p at now (ns since the
// epoch), in a Tracker made with New.
func (t *Tracker) Observe(p *limiter.Policy, storeKey string, now int64) {
	t.ObserveHash(p, storeKey, Hash(storeKey), now)
}

// ObserveHash is Observe for a caller that has hashed storeKey already: h
// must be the same function of the key in every call on t, and Hash when
// the views are merged with other processes' (the Redis store).
func (t *Tracker) ObserveHash(p *limiter.Policy, storeKey string, h uint64, now int64) {
	l := t.locks[h&t.mask]
	l.Lock()
	t.ObserveLocked(p, storeKey, h, now, nil)
	l.Unlock()
}

// A Hint remembers where a key was counted last, so that counting it again
// skips finding its policy and its place in the summary. A caller keeps
// one per key and policy, beside its own state of the key, and passes it
// to every ObserveLocked for that key. A Hint is checked before it is
// used: a stale one costs the lookup it would have saved. The zero value
// is no hint.
type Hint struct {
	ps    *policyState
	e     int32  // the key's entry in its stripe's summary
	drain uint32 // the summary's drains then: a drain empties it
}

// ObserveLocked is ObserveHash for a caller that holds the lock of the
// key's stripe: the lock at h%len(locks) of those passed to NewLocked. A
// store that keeps its views in process may pass its own, seeded hash, and
// hash each key once per call. hint, when not nil, is the key's Hint, and
// is updated; the key compares fastest with the one it holds when
// storeKey is the same string (the caller's own copy of the key) in every
// call.
func (t *Tracker) ObserveLocked(p *limiter.Policy, storeKey string, h uint64, now int64, hint *Hint) {
	var ps *policyState
	e := int32(-1)
	// Under the stripe's lock a policy stays live (see forget).
	if hint != nil && hint.ps != nil && hint.ps.live() && (hint.ps.policy == p || hint.ps.shape == shapeOf(p)) {
		ps = hint.ps
	} else {
		ps = t.state(p)
	}
	st := &ps.stripes[h&t.mask]
	if now >= st.end { // past st.slot: no division while calls stay in it
		if slot := now / ps.slotLen; slot > st.slot {
			if st.sum.total > 0 {
				ps.retire(int(h&t.mask), t.k)
			}
			st.slot = slot
		}
		st.end = (st.slot + 1) * ps.slotLen
	}
	if hint != nil && ps == hint.ps && hint.drain == st.sum.drains {
		e = hint.e
	}
	e, held := st.sum.add(storeKey, h, e)
	// A key the summary holds was added to the sketch since both were
	// last emptied (retire), and adding it again changes nothing.
	if !held {
		if st.sketch == nil {
			st.sketch = newPart(len(ps.stripes))
		}
		st.sketch.add(h, len(ps.stripes))
	}
	if hint != nil {
		*hint = Hint{ps, e, st.sum.drains}
	}
}

// retire moves stripe i's counts into its slot; the stripe's lock must be
// held.
func (ps *policyState) retire(i, k int) {
	st := &ps.stripes[i]
	ps.mu.Lock()
	ix := max(st.slot, ps.open) // a late straggler joins the oldest open slot
	sl := ps.slots[ix]
	if sl == nil {
		sl = &slotState{counts: newCounts(8*k - 1)}
		ps.slots[ix] = sl
	}
	if sl.counts == nil { // published as over: a late straggler
		sl.counts = newCounts(8*k - 1)
		for _, e := range sl.view {
			sl.counts.add(e.Key, e.N)
		}
	}
	sl.counts.total += st.sum.total
	sl.total += st.sum.total
	st.sum.drain(sl.counts.add)
	if st.sketch != nil {
		sl.sketch.mergePart(st.sketch, i, len(ps.stripes))
		clear(st.sketch)
	}
	sl.dirty = true
	ps.mu.Unlock()
}

// SlotView is what one process knows of one slot of a policy.
type SlotView struct {
	Index   int64   // the slot: its start time divided by SlotLen
	Entries []Entry // busiest first
	Sketch  *Sketch // the distinct keys seen; valid only during the call
	Total   int64   // requests counted
}

// Flush moves every stripe's counts into their slots, then calls publish
// (when not nil) with each policy's slots that changed since the last
// Flush. Slots that ended before now are then forgotten (without keep) or
// kept until they leave the window (with keep).
func (t *Tracker) Flush(now int64, publish func(p *limiter.Policy, views []SlotView)) {
	for sh, ps := range *t.policies.Load() {
		for i, l := range t.locks {
			l.Lock()
			if ps.stripes[i].sum.total > 0 {
				ps.retire(i, t.k)
			}
			l.Unlock()
		}
		ps.mu.Lock()
		var views []SlotView
		first, last := Span(ps.policy, now)
		for ix, sl := range ps.slots {
			if sl.dirty {
				sl.view = sl.counts.view(Keep)
				sl.dirty = false
				views = append(views, SlotView{Index: ix, Entries: sl.view, Sketch: &sl.sketch, Total: sl.counts.total})
			}
		}
		if publish != nil && len(views) > 0 {
			publish(ps.policy, views)
		}
		if !t.keep {
			ps.open = max(ps.open, last)
		}
		for ix, sl := range ps.slots {
			switch {
			case ix < first || (!t.keep && ix < last):
				delete(ps.slots, ix)
			case ix < last && sl.counts != nil:
				sl.counts = nil // over: only its view is read from now on
			}
		}
		idle := len(ps.slots) == 0
		ps.mu.Unlock()
		if idle {
			t.forget(sh, ps)
		}
	}
}

// forget drops an idle policy unless a request came in meanwhile. It
// marks ps dead under every stripe's lock, so that a call holding one
// counts in ps or in its successor, then takes ps out of the maps unless
// a successor has taken its place already.
func (t *Tracker) forget(sh shape, ps *policyState) {
	idle := true
	for i, l := range t.locks {
		l.Lock()
		defer l.Unlock()
		idle = idle && ps.stripes[i].sum.total == 0
	}
	if !idle {
		return
	}
	ps.alive.Store(false)
	t.mu.Lock() // a stripe's lock may be held while taking t.mu
	defer t.mu.Unlock()
	old := *t.policies.Load()
	m := make(map[shape]*policyState, len(old))
	for k, v := range old {
		if v != ps {
			m[k] = v
		}
	}
	t.policies.Store(&m)
	oldp := *t.byPointer.Load()
	bp := make(map[*limiter.Policy]*policyState, len(oldp))
	for k, v := range oldp {
		if v != ps {
			bp[k] = v
		}
	}
	t.byPointer.Store(&bp)
}

// Candidates returns the keys of p's slots in the window ending at now,
// with their summed counts, best first, the estimated number of distinct
// keys and the requests counted: what a Tracker made with keep knows after
// Flush.
func (t *Tracker) Candidates(p *limiter.Policy, now int64) (cands []Entry, active, total int64) {
	ps := (*t.policies.Load())[shapeOf(p)]
	if ps == nil {
		return nil, 0, 0
	}
	first, last := Span(p, now)
	sum := map[string]int64{}
	var sk Sketch
	ps.mu.Lock()
	for ix, sl := range ps.slots {
		if ix < first || ix > last {
			continue
		}
		for _, e := range sl.view {
			sum[e.Key] += e.N
		}
		sk.Merge(&sl.sketch)
		total += sl.total
	}
	ps.mu.Unlock()
	out := make([]Entry, 0, len(sum))
	for k, n := range sum {
		out = append(out, Entry{k, n})
	}
	sortEntries(out)
	return out, sk.Count(), total
}

// Merge sums entries by key (views of one slot from several processes, or
// of several slots) and orders the result best first.
func Merge(lists ...[]Entry) []Entry {
	sum := map[string]int64{}
	for _, l := range lists {
		for _, e := range l {
			sum[e.Key] += e.N
		}
	}
	out := make([]Entry, 0, len(sum))
	for k, n := range sum {
		out = append(out, Entry{k, n})
	}
	sortEntries(out)
	return out
}

// Reads is how many of cands (best first) a listing of n keys reads
// exactly, when the candidates stand for total requests: n, and every
// candidate whose estimate is above total/2K, which takes in every key
// with more than total/K requests (the guarantee), and is fewer than 2K.
func (t *Tracker) Reads(n int, total int64, cands []Entry) int {
	threshold := total / int64(2*t.k)
	above := 0
	for above < len(cands) && above < 2*t.k && cands[above].N > threshold {
		above++
	}
	return min(len(cands), max(n, above))
}
