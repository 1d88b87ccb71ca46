package redisstore

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent limiter calls into pipelines without waiting
// on a timer: a caller that finds a flush slot free sends at once, alone or
// with whatever is queued; callers that arrive while the slots are busy
// queue up, and when a flush ends the first of them sends the whole queue.
// Under light load every call goes out alone and immediately; under heavy
// load the pipelines deepen by themselves. Each call is one script, atomic
// on its own; a pipeline does not make calls atomic together (on a cluster
// it spans hash slots).
type batcher struct {
	s          *Store
	mu         sync.Mutex
	queue      []*pending
	flushing   int
	maxFlushes int
	pool       sync.Pool
}

// op is one limiter call: it queues its commands and, after the pipeline
// ran, reads its replies.
type op interface {
	queue(ctx context.Context, pipe redis.Pipeliner)
	done(ctx context.Context, s *Store)
}

type pending struct {
	op      op
	record  *recordArgs // index entry to write with the call, or nil
	wake    chan bool   // true: flush handoff; false: the result is ready
	handoff []*pending  // the batch this caller must flush when woken with true
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

// do runs o (and its index record) in some pipeline.
func (b *batcher) do(o op, rec *recordArgs) {
	p := b.pool.Get().(*pending)
	p.op, p.record = o, rec
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
	p.op, p.record = nil, nil
	b.pool.Put(p)
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

// flush sends one pipeline.
func (b *batcher) flush(batch []*pending) {
	ctx, cancel := context.WithTimeout(context.Background(), b.s.timeout)
	defer cancel()
	if len(batch) == 1 && batch[0].record == nil {
		if o, ok := batch[0].op.(*scriptOp); ok {
			o.v, o.err = o.c.script.Run(ctx, b.s.client, o.c.keys, o.c.args...).Result()
			return
		}
	}
	pipe := b.s.client.Pipeline()
	for _, p := range batch {
		p.op.queue(ctx, pipe)
		if r := p.record; r != nil {
			pipe.ZAdd(ctx, r.index, redis.Z{Score: r.score, Member: r.member})
			pipe.PExpire(ctx, r.index, msDuration(r.ttl))
		}
	}
	cmds, err := pipe.Exec(ctx)
	stampUnanswered(cmds, err)
	for _, p := range batch {
		p.op.done(ctx, b.s)
	}
}

// scriptOp runs a limiter script by SHA. A script the server does not know
// fails with NOSCRIPT without running, so it alone runs again through
// Script.Run, which loads it.
type scriptOp struct {
	c   call
	cmd *redis.Cmd
	v   any
	err error
}

func (o *scriptOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.cmd = pipe.EvalSha(ctx, o.c.script.Hash(), o.c.keys, o.c.args...)
}

func (o *scriptOp) done(ctx context.Context, s *Store) {
	o.v, o.err = o.cmd.Result()
	if o.err != nil && redis.HasErrorPrefix(o.err, "NOSCRIPT") {
		o.v, o.err = o.c.script.Run(ctx, s.client, o.c.keys, o.c.args...).Result()
	}
}

// stampUnanswered gives every command of a pipeline the pipeline's error
// when no command carries one. go-redis leaves the commands without a reply
// and without an error when a standalone connection fails to initialise
// with an error reply (a wrong password: WRONGPASS or NOAUTH); read as they
// are, they would look like empty answers. A cluster pipeline stamps the
// commands of a failed node itself, so answered commands keep their replies.
func stampUnanswered(cmds []redis.Cmder, err error) {
	if err == nil {
		return
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return
		}
	}
	for _, c := range cmds {
		c.SetErr(err)
	}
}
