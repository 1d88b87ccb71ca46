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
// process writes, for every policy it saw, one pipeline (a MULTI/EXEC per
// plain pipeline) that writes its view of the current slot of time:
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
	flushMu sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
}

func (s *Store) startTopKeys(k int) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	s.top = &topKeys{s: s, tracker: topk.New(k, false), id: hex.EncodeToString(b[:]),
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
			ctx, cancel := context.WithTimeout(context.Background(), max(tk.s.timeout, time.Second))
			_ = tk.flush(ctx)
			cancel()
		}
	}
}

// close stops the flush loop after one last flush.
func (tk *topKeys) close() {
	tk.closing.Do(func() {
		close(tk.stop)
		<-tk.done
		ctx, cancel := context.WithTimeout(context.Background(), tk.s.timeout)
		_ = tk.flush(ctx)
		cancel()
	})
}

func (s *Store) topName(p *limiter.Policy, tag, rest string) string {
	return s.prefix + "idx:{" + p.Name + ":" + tag + "}:" + algoCodes[p.AlgorithmID()] + ":" +
		strconv.FormatInt(p.Window.Milliseconds(), 10) + ":" + rest
}

func shardTag(shard int) string { return "t" + strconv.Itoa(shard) }

func slotPart(ix int64, id string) string { return strconv.FormatInt(ix, 10) + ":" + id }

// FlushKeys implements limiter.KeyFlusher: it writes what this process
// counted since its last flush.
func (s *Store) FlushKeys(ctx context.Context) error { return s.top.flush(ctx) }

func (tk *topKeys) flush(ctx context.Context) error {
	tk.flushMu.Lock()
	defer tk.flushMu.Unlock()
	s := tk.s
	now := s.clock().UnixNano()
	type job struct {
		p    *limiter.Policy
		pipe redis.Pipeliner
	}
	var jobs []job
	tk.tracker.Flush(now, func(p *limiter.Policy, views []topk.SlotView) {
		pipe := s.client.Pipeline()
		l := int64(topk.SlotLen(p))
		last := int64(0)
		gw := s.topName(p, "h", "gw")
		for _, v := range views {
			// Kept until one slot after the slot leaves the window.
			ttl := time.Duration((v.Index+2)*l + int64(p.Window) - now)
			ttl = max(ttl, time.Second)
			var members [topShards][]redis.Z
			for _, e := range v.Entries {
				sh := topk.Hash(e.Key) % topShards
				members[sh] = append(members[sh], redis.Z{Score: float64(e.N), Member: e.Key})
			}
			for sh := range topShards {
				key := s.topName(p, shardTag(sh), slotPart(v.Index, tk.id))
				if len(members[sh]) > 0 {
					pipe.ZAdd(ctx, key, members[sh]...)
					pipe.PExpire(ctx, key, ttl)
				}
			}
			pipe.Set(ctx, s.topName(p, "h", slotPart(v.Index, tk.id)), v.Sketch.AppendDense(nil), ttl)
			pipe.Set(ctx, s.topName(p, "h", slotPart(v.Index, tk.id)+":n"), v.Total, ttl)
			pipe.ZAdd(ctx, gw, redis.Z{Score: float64(v.Index), Member: tk.id})
			last = max(last, v.Index)
		}
		first, _ := topk.Span(p, now)
		pipe.ZRemRangeByScore(ctx, gw, "-inf", "("+strconv.FormatInt(first, 10))
		pipe.PExpire(ctx, gw, time.Duration((last+2)*l+int64(p.Window)-now))
		jobs = append(jobs, job{p, pipe})
	})
	if s.blocked != nil {
		// Rejections answered from the local cache, so that every
		// process's listing shows the fleet's rejected counts.
		if pending := s.blocked.drainPending(); len(pending) > 0 {
			pipe := s.client.Pipeline()
			for k, n := range pending {
				p := &limiter.Policy{Name: k.policy, Algorithm: k.algorithm, Window: k.window}
				name := s.keyName(p, k.key) + ":rej"
				pipe.IncrBy(ctx, name, n)
				pipe.PExpire(ctx, name, k.window)
			}
			jobs = append(jobs, job{&limiter.Policy{Name: "(rejections)"}, pipe})
		}
	}
	var errs []error
	for _, j := range jobs {
		// Best effort, and outside the breaker: a flush must never be the
		// call that probes a recovering Redis while requests wait.
		if s.breaker != nil && s.breaker.open() {
			errs = append(errs, fmt.Errorf("policy %s: %w", j.p.Name, ErrUnavailable))
			continue
		}
		if _, err := j.pipe.Exec(ctx); err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", j.p.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("redis busiest-key flush: %w", err)
	}
	return nil
}

// Keys implements limiter.Store; see topkeys.go for the layout it reads.
func (s *Store) Keys(ctx context.Context, p *limiter.Policy, limit int) (limiter.KeyList, error) {
	if err := s.top.flush(ctx); err != nil {
		return limiter.KeyList{}, fmt.Errorf("redis keys: %w", err)
	}
	var cands []topk.Entry
	var active, total int64
	err := s.guard(ctx, func() (err error) {
		ctx, cancel := context.WithTimeout(ctx, 5*s.timeout)
		defer cancel()
		cands, active, total, err = s.top.candidates(ctx, p, max(limit, 2*s.top.tracker.K()))
		return err
	})
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
// listing, without the peeks.
func (s *Store) RankKeys(ctx context.Context, p *limiter.Policy, n int) ([]string, error) {
	if err := s.top.flush(ctx); err != nil {
		return nil, fmt.Errorf("redis rank keys: %w", err)
	}
	var cands []topk.Entry
	err := s.guard(ctx, func() (err error) {
		ctx, cancel := context.WithTimeout(ctx, 5*s.timeout)
		defer cancel()
		cands, _, _, err = s.top.candidates(ctx, p, n)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redis rank keys: %w", err)
	}
	keys := make([]string, len(cands))
	for i, c := range cands {
		keys[i] = c.Key
	}
	return keys, nil
}
