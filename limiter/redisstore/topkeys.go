package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/internal/listing"
	"github.com/sluice-gateway/sluice/limiter/topk"
)

// The busiest-key listing on Redis. Requests are counted in process by a
// topk.Tracker (no Redis command per request). About once a second each
// process writes, for every policy it saw, one plain pipeline (no
// MULTI/EXEC) with its views of the slots of time that changed since:
//
//	<prefix>idx:{<policy>:t<shard>}:<alg>:<window ms>:<slot>:<process>   ZSET key -> count
//	<prefix>idx:{<policy>:h}:<alg>:<window ms>:<slot>:<process>          HLL (dense) of the keys seen
//	<prefix>idx:{<policy>:h}:<alg>:<window ms>:<slot>:<process>:n        requests counted
//	<prefix>idx:{<policy>:h}:<alg>:<window ms>:gw                         ZSET process -> last slot
//
// A key's shard is topk.Hash(key) mod topShards, the same in every
// process; the hash tags keep each shard's keys (and a listing's union of
// them) in one Cluster hash slot, and spread the shards over the nodes.
// Every key expires one slot after its slot leaves the window. A view only
// overwrites counts: a key dropped from a process's summary keeps the count
// last written for it, which is still at most its true count, so the
// listing's guarantee holds (and a half-written view does no harm).
//
// A flush that fails (Redis down, slow, or refusing the writes: OOM,
// READONLY, NOPERM, LOADING) keeps the views it could not write, and the
// next flushes send them again until one succeeds or their slot leaves the
// window, when no listing reads it any more. What is kept is bounded: per
// policy, the slots that overlap one window (at most 12), each at most
// 8K-1 keys and a 12 KiB sketch, a later view of a slot replacing the
// earlier one. Writing a view again counts nothing twice, whatever part of
// an earlier attempt Redis applied (a reply lost after a timeout, a
// pipeline half refused): every write sets this process's own keys of the
// slot to the whole of what it counted there (ZADD without INCR, SET), and
// its last slot in the gw set only rises (ZADD GT).
//
// A flush also adds the rejections answered from the local cache
// (blocked.go) to their keys' rejected counts, in numbered batches per key
// that Redis applies once (addRejectedOnceScript, which remembers this
// process's last batch in <key>:rej:<process>): a batch is sent again
// until Redis confirms it, or for at most a window, and the rejections
// answered meanwhile wait for the next batch.
//
// A listing reads the processes active in the window, then, in one
// pipeline, per shard ZUNIONSTORE of every process's views of the window's
// slots, the union's best 2K (or N) members, and DEL of the union; PFCOUNT
// of the sketches and MGET of the request counts. It then peeks the N best
// candidates and any more that the guarantee needs (topk.Tracker.Reads),
// through the batcher. Its cost is bounded by N, K and the number of
// processes, never by the active keys.

const topShards = 8

type topKeys struct {
	s       *Store
	tracker *topk.Tracker
	id      string // this process
	// flushLock is full while a flush runs; a flush waiting for it can
	// give up.
	flushLock chan struct{}
	// unsent holds the views that no flush has written yet, until one
	// does or their slot leaves the window; guarded by flushLock.
	unsent map[topShape]*unsentViews
	// rejections are the rejections answered from the local cache on
	// their way to Redis, by key; batches numbers their batches.
	rejMu      sync.Mutex
	rejections map[blockedKey]rejectionBatch
	batches    uint64
	stop       chan struct{}
	done       chan struct{}
	stopping   sync.Once
	closing    sync.Once
}

func (s *Store) startTopKeys(k int) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.top = &topKeys{s: s, tracker: topk.New(k, false), id: hex.EncodeToString(b[:]),
		flushLock: make(chan struct{}, 1), unsent: map[topShape]*unsentViews{}, rejections: map[blockedKey]rejectionBatch{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.top.loop()
	s.startResets()
}

func (tk *topKeys) observe(p *limiter.Policy, key string) {
	tk.tracker.Observe(p, limiter.StoreKey(key), tk.s.clock().UnixNano())
}

func (tk *topKeys) loop() {
	defer close(tk.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-tk.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(tk.s.life, tk.flushTimeout())
			_ = tk.flush(ctx)
			cancel()
		}
	}
}

// stopLoop stops the flush loop and waits until it returned, or ctx ended.
func (tk *topKeys) stopLoop(ctx context.Context) {
	tk.stopping.Do(func() { close(tk.stop) })
	waitDone(ctx, tk.done)
}

// close stops the flush loop and sends one last flush, waiting for the
// loop's own no longer than ctx allows.
func (tk *topKeys) close(ctx context.Context) {
	tk.closing.Do(func() {
		tk.stopLoop(ctx)
		_ = tk.flush(ctx)
	})
}

func (s *Store) topName(p *limiter.Policy, tag, rest string) string {
	return s.prefix + "idx:{" + p.Name + ":" + tag + "}:" + algoCodes[p.AlgorithmID()] + ":" +
		strconv.FormatInt(p.Window.Milliseconds(), 10) + ":" + rest
}

func shardTag(shard int) string { return "t" + strconv.Itoa(shard) }

func slotPart(ix int64, id string) string { return strconv.FormatInt(ix, 10) + ":" + id }

// FlushKeys implements limiter.KeyFlusher: it writes what this process
// counted since its last flush, within flushTimeout.
func (s *Store) FlushKeys(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.top.flushTimeout())
	defer cancel()
	return s.top.flush(ctx)
}

// flushTimeout bounds a busiest-key flush of its own (one pipeline per
// policy): the store's timeout, and at least a second.
func (tk *topKeys) flushTimeout() time.Duration { return max(tk.s.timeout, time.Second) }

// listTimeout bounds a listing as a whole (the flush before it, the reads
// of the fleet's summaries and the peeks): five times the store's timeout.
func (s *Store) listTimeout() time.Duration { return 5 * s.timeout }

// flush writes this process's views; one runs at a time, and a flush that
// waits for another gives up when ctx ends (its views stay unsent).
func (tk *topKeys) flush(ctx context.Context) error {
	select {
	case tk.flushLock <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("redis busiest-key flush: waiting for the flush before it: %w", ctx.Err())
	}
	defer func() { <-tk.flushLock }()
	s := tk.s
	now := s.clock().UnixNano()
	tk.tracker.Flush(now, func(p *limiter.Policy, views []topk.SlotView) {
		sh := topShape{p.Name, p.Algorithm, p.Window}
		u := tk.unsent[sh]
		if u == nil {
			u = &unsentViews{slots: map[int64]slotWrite{}}
			tk.unsent[sh] = u
		}
		u.p = p
		for _, v := range views {
			// A later view of a slot holds everything an earlier one did.
			u.slots[v.Index] = slotWrite{index: v.Index, entries: v.Entries, sketch: v.Sketch.AppendDense(nil), total: v.Total}
		}
	})
	var errs []error
	for sh, u := range tk.unsent {
		first, _ := topk.Span(u.p, now)
		for ix := range u.slots {
			if ix < first { // no listing reads it any more
				delete(u.slots, ix)
			}
		}
		if len(u.slots) == 0 {
			delete(tk.unsent, sh)
			continue
		}
		// Best effort, and outside the breaker: a flush must never be the
		// call that probes a recovering Redis while requests wait.
		if s.breaker != nil && s.breaker.open() {
			errs = append(errs, fmt.Errorf("policy %s: %w", u.p.Name, ErrUnavailable))
			continue
		}
		if _, err := tk.writeViews(ctx, u, now).Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", u.p.Name, err))
			continue
		}
		delete(tk.unsent, sh)
	}
	if s.blocked != nil {
		// Rejections answered from the local cache, so that every
		// process's listing shows the fleet's rejected counts.
		if err := tk.writeRejections(ctx, now); err != nil {
			errs = append(errs, fmt.Errorf("rejections: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redis busiest-key flush: %w", err)
	}
	return nil
}

// rejectionBatch is what a key's rejections answered from the local
// cache are on their way to Redis: a numbered batch that Redis has not
// confirmed (sent again, with the same number, until it does), and those
// drained since, for the next batch.
type rejectionBatch struct {
	id     uint64 // 0: no batch is waiting for Redis
	n      int64  // rejections in batch id
	more   int64  // rejections drained since, for the next batch
	window time.Duration
	first  int64 // when batch id was first sent (ns, the store's clock)
}

// writeRejections adds the rejections that the local cache answered to
// their keys' counts in Redis, once each (addRejectedOnceScript), however
// often a batch must be sent again. A batch Redis has not confirmed within
// a window is dropped (the count it adds to expires a window after its
// last write), so what is kept is bounded by the keys blocked in a window.
func (tk *topKeys) writeRejections(ctx context.Context, now int64) error {
	s := tk.s
	tk.rejMu.Lock()
	for k, n := range s.blocked.drainPending() {
		b := tk.rejections[k]
		b.more += n
		b.window = k.window
		tk.rejections[k] = b
	}
	type send struct {
		k   blockedKey
		b   rejectionBatch
		cmd *redis.Cmd
	}
	var sends []send
	for k, b := range tk.rejections {
		if b.id != 0 && now-b.first > int64(b.window) {
			b.id, b.n = 0, 0
		}
		if b.id == 0 {
			if b.more == 0 {
				delete(tk.rejections, k)
				continue
			}
			tk.batches++
			b.id, b.n, b.more, b.first = tk.batches, b.more, 0, now
			tk.rejections[k] = b
		}
		sends = append(sends, send{k: k, b: b})
	}
	tk.rejMu.Unlock()
	if len(sends) == 0 {
		return nil
	}
	// Best effort, and outside the breaker, as the views above.
	if s.breaker != nil && s.breaker.open() {
		return ErrUnavailable
	}
	pipe := s.client.Pipeline()
	for i, x := range sends {
		p := &limiter.Policy{Name: x.k.policy, Algorithm: x.k.algorithm, Window: x.k.window}
		name := s.keyName(p, x.k.key) + ":rej"
		sends[i].cmd = addRejectedOnceScript.EvalSha(ctx, pipe, []string{name, name + ":" + tk.id},
			x.b.n, x.b.id, max(x.k.window.Milliseconds(), 1))
	}
	_, err := pipe.Exec(ctx)
	tk.rejMu.Lock()
	defer tk.rejMu.Unlock()
	noScript := false
	for _, x := range sends {
		if err := x.cmd.Err(); err != nil {
			noScript = noScript || redis.HasErrorPrefix(err, "NOSCRIPT")
			continue
		}
		// Confirmed, unless a reset forgot the batch meanwhile.
		if b, ok := tk.rejections[x.k]; ok && b.id == x.b.id {
			b.id, b.n = 0, 0
			tk.rejections[x.k] = b
		}
	}
	if noScript {
		// A restarted or new server: the next flush finds the script.
		_ = addRejectedOnceScript.Load(ctx, s.client).Err()
	}
	return err
}

// forgetRejections drops k's rejections on their way to Redis: its key
// was reset and starts afresh. (A batch already sent may still land after
// the reset.)
func (tk *topKeys) forgetRejections(k blockedKey) {
	tk.rejMu.Lock()
	delete(tk.rejections, k)
	tk.rejMu.Unlock()
}

// topShape identifies a policy's views the way their Redis keys do.
type topShape struct {
	name      string
	algorithm limiter.Algorithm
	window    time.Duration
}

// unsentViews are one policy's slot views that no flush has written yet.
type unsentViews struct {
	p     *limiter.Policy // the latest seen with this shape
	slots map[int64]slotWrite
}

// slotWrite is what this process writes of one slot: the whole of what it
// counted in the slot so far, so writing it again changes nothing.
type slotWrite struct {
	index   int64
	entries []topk.Entry
	sketch  []byte // dense encoding
	total   int64
}

// writeViews returns a pipeline that writes u's slots. Every write sets
// this process's own keys of a slot (ZADD without INCR, SET) or raises the
// process's last slot (ZADD GT), so the pipeline may be sent again after
// it failed, whatever part of it Redis applied, or after Redis applied it
// and the reply was lost: nothing is counted twice.
func (tk *topKeys) writeViews(ctx context.Context, u *unsentViews, now int64) redis.Pipeliner {
	s, p := tk.s, u.p
	pipe := s.client.Pipeline()
	l := int64(topk.SlotLen(p))
	last := now / l
	for _, v := range u.slots {
		// Kept until one slot after the slot leaves the window.
		ttl := time.Duration((v.index+2)*l + int64(p.Window) - now)
		ttl = max(ttl, time.Second)
		var members [topShards][]redis.Z
		for _, e := range v.entries {
			sh := topk.Hash(e.Key) % topShards
			members[sh] = append(members[sh], redis.Z{Score: float64(e.N), Member: e.Key})
		}
		for sh := range topShards {
			key := s.topName(p, shardTag(sh), slotPart(v.index, tk.id))
			if len(members[sh]) > 0 {
				pipe.ZAdd(ctx, key, members[sh]...)
				pipe.PExpire(ctx, key, ttl)
			}
		}
		pipe.Set(ctx, s.topName(p, "h", slotPart(v.index, tk.id)), v.sketch, ttl)
		pipe.Set(ctx, s.topName(p, "h", slotPart(v.index, tk.id)+":n"), v.total, ttl)
		last = max(last, v.index)
	}
	gw := s.topName(p, "h", "gw")
	first, _ := topk.Span(p, now)
	newest := int64(0)
	for ix := range u.slots {
		newest = max(newest, ix)
	}
	pipe.ZAddArgs(ctx, gw, redis.ZAddArgs{GT: true, Members: []redis.Z{{Score: float64(newest), Member: tk.id}}})
	pipe.ZRemRangeByScore(ctx, gw, "-inf", "("+strconv.FormatInt(first, 10))
	// Until one slot after the current slot leaves the window: no process
	// has written a later slot.
	pipe.PExpire(ctx, gw, time.Duration((last+2)*l+int64(p.Window)-now))
	return pipe
}

// Keys implements limiter.Store; see topkeys.go for the layout it reads.
// It is bounded by listTimeout.
func (s *Store) Keys(ctx context.Context, p *limiter.Policy, limit int) (limiter.KeyList, error) {
	ctx, cancel := context.WithTimeout(ctx, s.listTimeout())
	defer cancel()
	cands, active, total, err := s.rank(ctx, p, max(limit, 2*s.top.tracker.K()))
	if err != nil {
		return limiter.KeyList{}, fmt.Errorf("redis keys: %w", err)
	}
	cands = cands[:s.top.tracker.Reads(limit, total, cands)]
	out := limiter.KeyList{ActiveKeys: active}
	usages := make([]limiter.Usage, len(cands))
	errs := make([]error, len(cands))
	var wg sync.WaitGroup
	work := make(chan int)
	// Concurrent peeks share the batcher's pipelines.
	for range min(64, len(cands)) {
		wg.Go(func() {
			for i := range work {
				usages[i], errs[i] = s.Peek(ctx, p, cands[i].Key)
			}
		})
	}
	for i := range cands {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return limiter.KeyList{}, fmt.Errorf("redis keys: %w", err)
	}
	for _, u := range usages {
		if u.Requests() > 0 {
			out.Keys = append(out.Keys, u)
		}
	}
	listing.Sort(out.Keys)
	out.Keys = out.Keys[:min(len(out.Keys), limit)]
	return out, nil
}

// rank flushes this process's views and returns the fleet's candidates
// for a listing of p (see candidates).
func (s *Store) rank(ctx context.Context, p *limiter.Policy, reads int) (cands []topk.Entry, active, total int64, err error) {
	if err := s.top.flush(ctx); err != nil {
		return nil, 0, 0, err
	}
	err = s.guard(ctx, func() (err error) {
		cands, active, total, err = s.top.candidates(ctx, p, reads)
		return err
	})
	return cands, active, total, err
}

// candidates returns the best reads keys of the fleet's summaries of p's
// window, with their summed counts, the estimated active keys and the
// requests the summaries counted.
func (tk *topKeys) candidates(ctx context.Context, p *limiter.Policy, reads int) (cands []topk.Entry, active, total int64, err error) {
	s := tk.s
	now := s.clock().UnixNano()
	first, last := topk.Span(p, now)
	ids, err := s.client.ZRangeByScore(ctx, s.topName(p, "h", "gw"), &redis.ZRangeBy{
		Min: strconv.FormatInt(first, 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, 0, 0, err
	}
	if len(ids) == 0 {
		return nil, 0, 0, nil
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	tmpID := "u:" + hex.EncodeToString(b[:])
	pipe := s.client.Pipeline()
	var ranges [topShards]*redis.ZSliceCmd
	for sh := range topShards {
		var keys []string
		for ix := first; ix <= last; ix++ {
			for _, id := range ids {
				keys = append(keys, s.topName(p, shardTag(sh), slotPart(ix, id)))
			}
		}
		tmp := s.topName(p, shardTag(sh), tmpID)
		pipe.ZUnionStore(ctx, tmp, &redis.ZStore{Keys: keys})
		ranges[sh] = pipe.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: tmp, Start: 0, Stop: reads - 1, Rev: true})
		pipe.Del(ctx, tmp)
	}
	var hlls, totals []string
	for ix := first; ix <= last; ix++ {
		for _, id := range ids {
			hlls = append(hlls, s.topName(p, "h", slotPart(ix, id)))
			totals = append(totals, s.topName(p, "h", slotPart(ix, id)+":n"))
		}
	}
	count := pipe.PFCount(ctx, hlls...)
	sums := pipe.MGet(ctx, totals...)
	if _, err := pipe.Exec(ctx); err != nil && !isHLLUnsupported(count.Err()) {
		return nil, 0, 0, err
	}
	var lists [][]topk.Entry
	for _, r := range ranges {
		var l []topk.Entry
		for _, z := range r.Val() {
			if k, ok := z.Member.(string); ok {
				l = append(l, topk.Entry{Key: k, N: int64(z.Score)})
			}
		}
		lists = append(lists, l)
	}
	cands = topk.Merge(lists...)
	cands = cands[:min(len(cands), reads)]
	for _, v := range sums.Val() {
		if str, ok := v.(string); ok {
			n, _ := strconv.ParseInt(str, 10, 64)
			total += n
		}
	}
	active = count.Val()
	if count.Err() != nil {
		// A server whose PFCOUNT cannot read the dense encoding (miniredis):
		// merge the sketches here.
		if active, err = tk.mergeSketches(ctx, hlls); err != nil {
			return nil, 0, 0, err
		}
	}
	return cands, active, total, nil
}

// isHLLUnsupported reports a PFCOUNT error that means the server does not
// read HyperLogLogs written with SET (miniredis, which has its own format).
func isHLLUnsupported(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "WRONGTYPE")
}

func (tk *topKeys) mergeSketches(ctx context.Context, keys []string) (int64, error) {
	var sum, one topk.Sketch
	pipe := tk.s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	for _, c := range cmds {
		if b, err := c.Bytes(); err == nil && one.ReadDense(b) {
			sum.Merge(&one)
		}
	}
	return sum.Count(), nil
}

// RankKeys implements limiter.KeyRanker: the first round trips of a
// listing, without the peeks, bounded by listTimeout.
func (s *Store) RankKeys(ctx context.Context, p *limiter.Policy, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.listTimeout())
	defer cancel()
	cands, _, _, err := s.rank(ctx, p, n)
	if err != nil {
		return nil, fmt.Errorf("redis rank keys: %w", err)
	}
	keys := make([]string, len(cands))
	for i, c := range cands {
		keys[i] = c.Key
	}
	return keys, nil
}
