package redisstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/algo"
)

// Batched mode (Options.BatchInterval > 0) trades exactness for throughput
// on sliding_window policies: each process decides from its last view of
// the key's buckets in Redis plus what it admitted since, and every
// interval it adds its admissions to Redis (HINCRBY) and reads the buckets
// back, all in one pipeline. A decision costs no round trip.
//
// Bound: a process knows its own admissions at once and the others' within
// one interval, so in any window the fleet admits at most
// Limit + floor(Limit/Buckets) (the sliding_window bound) plus, for each of
// the other N-1 processes, what that process admitted for the key in the
// interval before its last flush: with a per-process rate of r requests a
// second and interval i, at most Limit + Limit/Buckets + (N-1)*r*i
// (and never more than N*(Limit + Limit/Buckets)). A key a process has
// not seen starts from an empty view until its first flush. Other
// algorithms stay exact in batched mode.
//
// A flush adds a key's admissions and rejections in a numbered batch that
// Redis applies once (addBatchOnceScript): a batch whose reply was lost (a
// timeout after the write, a dropped connection) is sent again by the next
// flushes until Redis confirms it, and what is admitted meanwhile waits for
// the next batch.
type batchedState struct {
	mu      sync.Mutex
	entries map[batchedKey]*batchedEntry
	batches uint64 // the last batch number given
}

type batchedKey struct {
	policy  string
	window  time.Duration
	buckets int
	key     string
}

type batchedEntry struct {
	p        *limiter.Policy
	key      string          // the caller's key (for overrides)
	global   map[int64]int64 // bucket index -> count in Redis at the last flush
	local    map[int64]int64 // bucket index -> admitted here, in no batch yet
	rejected int64           // rejections in no batch yet
	sending  *batch          // sent and not confirmed yet; nil when none
	lastUsed time.Time
}

// batch is one flush's admissions and rejections of a key, sent until
// Redis confirms it.
type batch struct {
	id       uint64
	local    map[int64]int64
	rejected int64
}

func newBatchedState() *batchedState {
	return &batchedState{entries: map[batchedKey]*batchedEntry{}}
}

// allowBatched decides locally.
func (s *Store) allowBatched(p *limiter.Policy, key string, cost int64) limiter.Decision {
	storeKey := limiter.StoreKey(key)
	now := s.clock()
	k := batchedKey{p.Name, p.Window, p.Buckets, storeKey}
	st := s.batched
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.entries[k]
	if e == nil {
		e = &batchedEntry{p: p, key: key, global: map[int64]int64{}, local: map[int64]int64{}}
		st.entries[k] = e
	}
	e.p, e.lastUsed = p, now
	limit := p.LimitFor(key)
	win := algo.WindowOf(p, time.Microsecond)
	nowUS := now.UnixMicro()
	buckets := make([]algo.Bucket, 0, len(e.global)+len(e.local))
	for ix, n := range e.global {
		buckets = append(buckets, algo.Bucket{Index: ix, Count: n})
	}
	for ix, n := range e.local {
		buckets = append(buckets, algo.Bucket{Index: ix, Count: n})
	}
	if e.sending != nil {
		for ix, n := range e.sending.local {
			buckets = append(buckets, algo.Bucket{Index: ix, Count: n})
		}
	}
	v := win.View(buckets, nowUS)
	d := limiter.Decision{Limit: limit}
	if win.Fits(v, limit, cost) {
		c := nowUS / win.Size
		e.local[c] += cost
		v.Inside += cost
		v.Newest = c
		d.Allowed = true
		d.Charge = limiter.Charge{Cost: cost, At: nowUS * 1000}
	} else {
		e.rejected++
		d.RetryAfter = win.RetryAfter(buckets, nowUS, limit, cost)
	}
	win.Fill(&d, v, nowUS, limit)
	return d
}

// Flush sends every process-local admission and rejection of batched mode
// to Redis and refreshes the local views, within ten times the store's
// timeout. The store calls it every BatchInterval and once more on Close;
// tests call it directly.
func (s *Store) Flush(ctx context.Context) error {
	if s.batched == nil {
		return nil
	}
	type job struct {
		k    batchedKey
		p    *limiter.Policy
		name string
		b    *batch // nil: nothing to send, the view is read
		send *redis.Cmd
		read *redis.MapStringStringCmd
	}
	st := s.batched
	now := s.clock()
	var jobs []*job
	st.mu.Lock()
	for k, e := range st.entries {
		if e.sending == nil && (len(e.local) > 0 || e.rejected > 0) {
			st.batches++
			e.sending = &batch{id: st.batches, local: e.local, rejected: e.rejected}
			e.local, e.rejected = map[int64]int64{}, 0
		}
		if e.sending == nil && now.Sub(e.lastUsed) > e.p.Window+e.p.BucketSize() {
			delete(st.entries, k) // idle: nothing to send, nothing worth keeping
			continue
		}
		jobs = append(jobs, &job{k: k, p: e.p, name: s.keyName(e.p, k.key), b: e.sending})
	}
	st.mu.Unlock()
	if len(jobs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*s.timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	for _, j := range jobs {
		if b := j.b; b != nil {
			args := make([]any, 0, 4+2*len(b.local))
			args = append(args, b.id, windowTTL(j.p).Milliseconds(), max(j.k.window.Milliseconds(), 1), b.rejected)
			for ix, n := range b.local {
				args = append(args, strconv.FormatInt(ix, 10), n)
			}
			j.send = addBatchOnceScript.EvalSha(ctx, pipe, []string{j.name, j.name + ":rej", j.name + ":batch:" + s.idPrefix}, args...)
			if len(b.local) > 0 {
				stale := windowTrim(j.p, now.UnixMicro()/j.p.BucketSize().Microseconds())
				pipe.Do(ctx, append([]any{"hdel", j.name}, stale...)...)
			}
		}
		j.read = pipe.HGetAll(ctx, j.name)
	}
	_, err := pipe.Exec(ctx)
	st.mu.Lock()
	defer st.mu.Unlock()
	noScript := false
	for _, j := range jobs {
		e := st.entries[j.k]
		if e == nil {
			continue
		}
		if j.send != nil {
			if serr := j.send.Err(); serr != nil {
				// Kept in e.sending: the next flush sends it again.
				noScript = noScript || redis.HasErrorPrefix(serr, "NOSCRIPT")
				continue
			}
			if e.sending == j.b {
				e.sending = nil
			}
		}
		if j.read.Err() != nil {
			continue
		}
		global := map[int64]int64{}
		for f, v := range j.read.Val() {
			ix, err1 := strconv.ParseInt(f, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err1 == nil && err2 == nil {
				global[ix] = n
			}
		}
		e.global = global
	}
	if noScript {
		// A restarted or new server: the next flush finds the script.
		_ = addBatchOnceScript.Load(ctx, s.client).Err()
	}
	return err
}

func (s *Store) flushLoop(interval time.Duration) {
	defer close(s.batchDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return // Close sends the last flush
		case <-t.C:
			_ = s.Flush(s.life)
		}
	}
}

// refundBatched takes a batched admission back; it reports false when the
// admission already went to Redis.
func (s *Store) refundBatched(p *limiter.Policy, key string, c limiter.Charge) bool {
	k := batchedKey{p.Name, p.Window, p.Buckets, limiter.StoreKey(key)}
	ix := c.At / 1000 / int64(p.BucketSize()/time.Microsecond)
	st := s.batched
	st.mu.Lock()
	defer st.mu.Unlock()
	e := st.entries[k]
	if e == nil || e.local[ix] < c.Cost {
		return false
	}
	e.local[ix] -= c.Cost
	return true
}
