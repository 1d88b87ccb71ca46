package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent limiter calls into pipelines without waiting
// on a timer: a caller that finds no flush running sends at once, alone or
// with whatever is queued; callers that arrive while flushes are running
// queue up, and when a flush ends the first of them sends the whole queue.
// Under light load every call goes out alone and immediately; under heavy
// load the pipelines deepen by themselves.
type batcher struct {
	s          *Store
	mu         sync.Mutex
	queue      []*pending
	flushing   int
	maxFlushes int
	pool       sync.Pool
}

type pending struct {
	c       call
	record  *recordArgs // index entry to write with the call, or nil
	v       any
	err     error
	wake    chan bool  // true: flush handoff; false: the result is ready
	handoff []*pending // the batch this caller must flush when woken with true
}

type recordArgs struct {
	index, member string
	score         float64
	ttl           int64 // ms
}

func newBatcher(s *Store, maxFlushes int) *batcher {
	b := &batcher{s: s, maxFlushes: max(1, maxFlushes)}
	b.pool.New = func() any { return &pending{wake: make(chan bool, 1)} }
	return b
}

// do runs c (and its index record) in some pipeline and returns its reply.
func (b *batcher) do(c call, rec *recordArgs) (any, error) {
	p := b.pool.Get().(*pending)
	p.c, p.record, p.v, p.err = c, rec, nil, nil
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.flushing < b.maxFlushes {
		b.flushing++
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()
		b.lead(batch)
	} else {
		b.mu.Unlock()
	}
	for <-p.wake {
		batch := p.handoff
		p.handoff = nil
		b.lead(batch)
	}
	v, err := p.v, p.err
	p.c, p.record, p.v = call{}, nil, nil
	b.pool.Put(p)
	return v, err
}

// lead flushes batch, then hands its flush slot, with everything queued
// meanwhile, to the first caller queued, or gives the slot up. Batches are
// taken from the queue under the lock, so no call is sent twice.
func (b *batcher) lead(batch []*pending) {
	b.flush(batch)
	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue
		b.queue = nil
		b.mu.Unlock()
		next[0].handoff = next
		next[0].wake <- true
	} else {
		b.flushing--
		b.mu.Unlock()
	}
	for _, p := range batch {
		p.wake <- false
	}
}

// flush sends one pipeline. A script the server does not know fails with
// NOSCRIPT without running, so those calls alone run again through
// Script.Run, which loads the script.
func (b *batcher) flush(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	if len(batch) == 1 && batch[0].record == nil {
		p := batch[0]
		p.v, p.err = p.c.script.Run(ctx, b.s.client, p.c.keys, p.c.args...).Result()
		return
	}
	pipe := b.s.client.Pipeline()
	cmds := make([]*redis.Cmd, len(batch))
	for i, p := range batch {
		cmds[i] = pipe.EvalSha(ctx, p.c.script.Hash(), p.c.keys, p.c.args...)
		if r := p.record; r != nil {
			pipe.ZAdd(ctx, r.index, redis.Z{Score: r.score, Member: r.member})
			pipe.PExpire(ctx, r.index, msDuration(r.ttl))
		}
	}
	_, _ = pipe.Exec(ctx)
	for i, p := range batch {
		p.v, p.err = cmds[i].Result()
		if p.err != nil && redis.HasErrorPrefix(p.err, "NOSCRIPT") {
			p.v, p.err = p.c.script.Run(ctx, b.s.client, p.c.keys, p.c.args...).Result()
		}
	}
}
