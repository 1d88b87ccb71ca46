// Package memstore is Sluice's in-process limiter.Store: the embedded default.
//
// Keys are spread over shards, each an open-addressing table under its
// own mutex, so concurrent requests for different keys rarely contend; a
// call hashes its key once (table.go). A key's entry holds the state of
// its policy's algorithm only: its type, one per algorithm, is picked when
// the key is first seen from a table indexed by the policy's
// limiter.AlgorithmID, and its methods apply algo's arithmetic
// (algorithms.go). Memory is bounded by MaxKeys: when a shard is full, the
// least recently seen of a random sample of its keys is evicted (keys that
// have drained go first). Drained keys are swept
// in the background. Time comes from an injectable clock, so tests never
// sleep; without one, decisions read a coarse clock (1ms steps) that costs
// an atomic load instead of a call to time.Now.
//
// A Store is safe for concurrent use. The zero value is not usable; call New.
package memstore

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/listing"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// DefaultMaxKeys bounds a Store whose Options.MaxKeys is zero.
const DefaultMaxKeys = 1 << 20

const (
	shardCount  = 64
	evictSample = 16
)

// Options configure a Store. The zero value is a sensible default.
type Options struct {
	// MaxKeys bounds the number of policy keys held; zero means DefaultMaxKeys.
	MaxKeys int
	// Clock returns the current time; nil means time.Now, which decisions
	// read through a clock kept by a goroutine in steps of 1ms (Close stops
	// it).
	Clock func() time.Time
	// SweepInterval is how often drained keys are removed in the background;
	// zero means one minute, negative disables the sweeper (call Sweep).
	// The busiest-key summaries are tidied every second alongside it.
	SweepInterval time.Duration
	// Path, used by Open, is a bbolt file that keeps the named counters,
	// their idempotency records and the history across restarts. Empty:
	// everything lives in memory. New ignores it.
	Path string
	// TopK is the K of the busiest-key summaries (see the limiter package
	// doc); zero means topk.DefaultK.
	TopK int
}

// Store is an in-process limiter.Store.
type Store struct {
	shards   [shardCount]shard
	seed     maphash.Seed
	clock    func() time.Time
	coarse   *atomic.Int64 // the coarse clock (ns) when no clock is injected; see tickLoop
	tickDone chan struct{} // nil when no clock is injected
	counters *counters
	ovr      overrides // run-time per-key limits; see overrides.go
	histMu   sync.Mutex
	hist     map[string]map[int64]*minute
	// histDirty holds the series changed since they were last written to
	// the file (durable stores only); under histMu.
	histDirty map[string]bool
	top       *topk.Tracker
	stop      chan struct{}
	done      chan struct{}
	closing   sync.Once
}

var _ limiter.Store = (*Store)(nil)

// entryKey identifies one key of one policy shape: a policy whose algorithm
// or window changes starts afresh instead of misreading old state.
type entryKey struct {
	policy    string
	algorithm limiter.AlgorithmID
	window    time.Duration
	buckets   int
	key       string
}

// entry is what every key's entry holds, whatever its algorithm; each
// algorithm's entry type (algorithms.go) embeds it.
type entry struct {
	key      entryKey
	state    keyState // the entry whose part this is: the algorithm's
	lastSeen int64    // ns
	drained  int64    // ns: from then on the entry holds nothing worth keeping
	rejected int64
	top      topk.Hint // where the busiest-key summary counted the key last
}

// New returns a Store that keeps everything in memory; Close stops its
// sweeper. Open keeps the counters in a file.
func New(opts Options) *Store {
	s := &Store{seed: maphash.MakeSeed(), clock: opts.Clock,
		stop: make(chan struct{}), done: make(chan struct{})}
	// The busiest-key summaries have a stripe per shard, guarded by the
	// shard's lock: a decision takes one lock.
	locks := make([]sync.Locker, shardCount)
	for i := range s.shards {
		locks[i] = &s.shards[i].mu
	}
	s.top = topk.NewLocked(opts.TopK, true, locks)
	if s.clock == nil {
		s.clock = time.Now
		s.coarse = new(atomic.Int64)
		s.coarse.Store(time.Now().UnixNano())
		s.tickDone = make(chan struct{})
		go s.tickLoop()
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	for i := range s.shards {
		// The shards' capacities add up to exactly maxKeys (at least 1 each).
		s.shards[i].capacity = max(1, maxKeys/shardCount)
		if i < maxKeys%shardCount {
			s.shards[i].capacity++
		}
	}
	s.counters = newMemCounters(s)
	s.hist = make(map[string]map[int64]*minute)
	s.histDirty = make(map[string]bool)
	interval := opts.SweepInterval
	if interval == 0 {
		interval = time.Minute
	}
	if interval > 0 {
		go s.sweepLoop(interval)
	} else {
		close(s.done)
	}
	return s
}

// coarseTick is the resolution of the clock that decisions read when no
// clock is injected: reading an atomic costs a fraction of time.Now, and
// decisions need no finer time than this.
const coarseTick = time.Millisecond

// tickLoop keeps the coarse clock.
func (s *Store) tickLoop() {
	defer close(s.tickDone)
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.coarse.Store(now.UnixNano())
		}
	}
}

// now is the time of a decision, in nanoseconds since the Unix epoch: the
// coarse clock, or the injected clock.
func (s *Store) now() int64 {
	if s.coarse != nil {
		return s.coarse.Load()
	}
	return s.clock().UnixNano()
}

func (s *Store) sweepLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	top := time.NewTicker(time.Second)
	defer top.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		case <-top.C:
			s.top.Flush(s.clock().UnixNano(), nil)
		}
	}
}

// Len returns the number of keys held.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.n
		sh.mu.Unlock()
	}
	return n
}

func keyOf(p *limiter.Policy, storeKey string) entryKey {
	return entryKey{policy: p.Name, algorithm: p.AlgorithmID(), window: p.Window, buckets: p.Buckets, key: storeKey}
}

// Allow implements limiter.Store.
func (s *Store) Allow(ctx context.Context, p *limiter.Policy, key string, cost int64) (limiter.Decision, error) {
	if cost < 1 {
		return limiter.Decision{}, limiter.ErrInvalidCost
	}
	if err := ctx.Err(); err != nil {
		return limiter.Decision{}, err // a caller that has gone is charged nothing
	}
	limit := p.LimitFor(key)
	sh, h, sk := s.locate(key)
	k := keyOf(p, sk)
	now := s.now()
	sh.mu.Lock()
	e := sh.lookup(k, h, now, func() keyState { return newState[k.algorithm](p) })
	d := e.state.allow(now, p, key, limit, cost)
	e.lastSeen = now
	if !d.Allowed {
		e.rejected++
	}
	e.drained = max(e.drained, now+int64(max(d.ResetAfter, d.RetryAfter, p.Window)))
	s.top.ObserveLocked(p, e.key.key, h, now, &e.top)
	sh.mu.Unlock()
	return d, nil
}

// Refund implements limiter.Store.
func (s *Store) Refund(ctx context.Context, p *limiter.Policy, key string, c limiter.Charge) error {
	if c.Cost <= 0 {
		return nil
	}
	sh, h, sk := s.locate(key)
	k := keyOf(p, sk)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.now()
	if e := sh.lookup(k, h, now, nil); e != nil {
		e.state.refund(now, p, key, c)
	}
	return nil
}

// Peek implements limiter.Store.
func (s *Store) Peek(ctx context.Context, p *limiter.Policy, key string) (limiter.Usage, error) {
	if err := ctx.Err(); err != nil {
		return limiter.Usage{}, err
	}
	sh, h, sk := s.locate(key)
	k := keyOf(p, sk)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.now()
	return s.usage(p, k, sh.lookup(k, h, now, nil), now), nil
}

// usage reads e, or a new entry when e is nil: an unseen key.
func (s *Store) usage(p *limiter.Policy, k entryKey, e *entry, now int64) limiter.Usage {
	var st keyState
	if e != nil {
		st = e.state
	} else {
		st = newState[k.algorithm](p)
	}
	limit := p.LimitFor(k.key)
	d := st.peek(now, p, k.key, limit)
	return limiter.Usage{Key: k.key, Limit: limit, Count: d.Count, Remaining: d.Remaining, ResetAfter: d.ResetAfter, Rejected: st.base().rejected}
}

// Reset implements limiter.Store.
func (s *Store) Reset(ctx context.Context, p *limiter.Policy, key string) error {
	sh, h, sk := s.locate(key)
	k := keyOf(p, sk)
	sh.mu.Lock()
	if i := sh.index(k, h); i >= 0 {
		sh.removeAt(i)
	}
	sh.mu.Unlock()
	return nil
}

// Keys implements limiter.Store: it peeks the best candidates of the
// policy's busiest-key summary (limit of them, and any more the guarantee
// needs: fewer than 2K), never every key, and holds each shard's lock only
// for one peek at a time.
func (s *Store) Keys(ctx context.Context, p *limiter.Policy, limit int) (limiter.KeyList, error) {
	now := s.clock().UnixNano()
	s.top.Flush(now, nil)
	cands, active, total := s.top.Candidates(p, now)
	out := limiter.KeyList{ActiveKeys: active}
	for _, c := range cands[:s.top.Reads(limit, total, cands)] {
		if err := ctx.Err(); err != nil {
			return limiter.KeyList{}, err
		}
		u, _ := s.Peek(ctx, p, c.Key)
		if u.Requests() > 0 {
			out.Keys = append(out.Keys, u)
		}
	}
	listing.Sort(out.Keys)
	out.Keys = out.Keys[:min(len(out.Keys), limit)]
	return out, nil
}

// Ping implements limiter.Store; the memory store is always reachable.
func (s *Store) Ping(context.Context) error { return nil }

// Close stops the sweeper and, for a store with a Path, waits for the
// commit in progress, writes the history and closes the file. It is safe to
// call more than once.
func (s *Store) Close() error {
	var err error
	s.closing.Do(func() {
		close(s.stop)
		if s.counters.db != nil {
			err = s.counters.db.close()
		}
	})
	<-s.done
	if s.tickDone != nil {
		<-s.tickDone
	}
	return err
}

// RankKeys implements limiter.KeyRanker.
func (s *Store) RankKeys(ctx context.Context, p *limiter.Policy, n int) ([]string, error) {
	now := s.clock().UnixNano()
	s.top.Flush(now, nil)
	cands, _, _ := s.top.Candidates(p, now)
	keys := make([]string, 0, min(n, len(cands)))
	for _, c := range cands[:min(n, len(cands))] {
		keys = append(keys, c.Key)
	}
	return keys, nil
}
