package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// batcher coalesces concurrent store calls into pipelines without waiting
// on a timer: a caller that finds a flush slot free sends at once, alone or
// with whatever is queued; callers that arrive while the slots are busy
// queue up, and when a flush ends the first of them sends the whole queue.
// Under light load every call goes out alone and immediately; under heavy
// load the pipelines deepen by themselves. Each call's commands are sent
// together and in order; a pipeline does not make calls atomic together
// (on a cluster it spans hash slots).
//
// Every call carries its caller's context. A caller whose context ends
// while its call is queued withdraws it: the call is never sent and
// charges nothing. A caller whose context ends while its call is on the
// wire returns at once; the reply is dropped when it comes.
//
// Every call is bounded by the store's timeout from when it was made, its
// wait in the queue included: a pipeline's deadline is the earliest
// enqueue time of its calls plus the timeout (bounded by the caller's own
// context as well when it carries one call only), and a call that is still
// queued when its time is up fails with errQueueTimeout without being sent
// (it charges nothing). The flushes ahead of a queued call end by their own
// deadlines, which are no later than its own, so the bound needs no timer
// per call: it holds as long as the client honours context deadlines
// (ContextTimeoutEnabled, which NewClient sets).
type batcher struct {
	s          *Store
	mu         sync.Mutex
	queue      []*pending
	flushing   int
	maxFlushes int
	pool       sync.Pool
	single     *redis.Client // a standalone or sentinel client; nil on a cluster or a small pool
	pins       []*pinned     // idle pinned connections, at most maxFlushes
	closed     bool
}

// pinned is a connection that the flushes keep between pipelines on a
// standalone server (or a sentinel group's master): a busy store then
// skips the pool's liveness check, a syscall per pipeline. A connection
// that a flush finds idle for longer than pinnedIdle goes back to the pool,
// whose next Get checks it, so a connection the server or a middlebox
// closed while idle is never used blindly (until a flush comes, idle ones
// stay pinned, out of the pool); one whose exchange failed on the connection
// rather than with a Redis error reply is closed, with the other idle ones.
// Idleness is measured on the store's clock.
type pinned struct {
	conn *redis.Conn
	used time.Time
}

const pinnedIdle = time.Second

// op is one store call: it queues its commands and, after the pipeline
// ran, reads its replies.
type op interface {
	queue(ctx context.Context, pipe redis.Pipeliner)
	done(ctx context.Context, s *Store)
}

// States of a pending call.
const (
	queued int32 = iota
	sent
	withdrawn
)

type pending struct {
	op      op
	ctx     context.Context
	at      time.Time // when the call was made; its deadline is at + the store's timeout
	err     error     // set before a result wake when the call failed unsent
	state   atomic.Int32
	wake    chan bool  // true: flush handoff; false: the result is ready
	handoff []*pending // the batch this caller must flush when woken with true
}

func newBatcher(s *Store, maxFlushes int) *batcher {
	b := &batcher{s: s, maxFlushes: max(1, maxFlushes)}
	// A pool no larger than the flushes in flight is not pinned: the other
	// commands (Ping, trims, top keys) would wait for its timeout.
	if c, ok := s.client.(*redis.Client); ok && c.Options().PoolSize > b.maxFlushes {
		b.single = c
	}
	b.pool.New = func() any { return &pending{wake: make(chan bool, 1)} }
	return b
}

// pin returns a pinned connection for one flush, or nil on a cluster.
func (b *batcher) pin() *pinned {
	if b.single == nil {
		return nil
	}
	b.mu.Lock()
	var pc *pinned
	if n := len(b.pins); n > 0 {
		pc = b.pins[n-1]
		b.pins[n-1] = nil
		b.pins = b.pins[:n-1]
	}
	b.mu.Unlock()
	if pc != nil && b.s.clock().Sub(pc.used) > pinnedIdle {
		_ = pc.conn.Close()
		pc = nil
	}
	if pc == nil {
		pc = &pinned{conn: b.single.Conn()}
	}
	return pc
}

// unpin keeps pc for the next flush, unless its exchange failed on the
// connection, the server said it is unwell (a password changed, a master
// became a replica: a new connection may fare better), or the store is
// closing.
func (b *batcher) unpin(pc *pinned, cmds []redis.Cmder, err error) {
	broken := err != nil && (!isReply(err) || unwellReply(err))
	for _, c := range cmds {
		if e := c.Err(); e != nil && (!isReply(e) || unwellReply(e)) {
			broken = true
		}
	}
	var others []*pinned
	b.mu.Lock()
	switch {
	case broken:
		// The others likely share its fate (a restart, a failover):
		// they go too, so that at most one more flush meets it.
		others = b.pins
		b.pins = nil
	case !b.closed && len(b.pins) < b.maxFlushes:
		pc.used = b.s.clock()
		b.pins = append(b.pins, pc)
		pc = nil
	}
	b.mu.Unlock()
	if pc != nil {
		_ = pc.conn.Close()
	}
	for _, o := range others {
		_ = o.conn.Close()
	}
}

// isReply reports whether err is a reply of the server (an error reply or
// a nil), after which the connection is still in step.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// close closes the pinned connections; later flushes close theirs.
func (b *batcher) close() {
	b.mu.Lock()
	pins := b.pins
	b.pins, b.closed = nil, true
	b.mu.Unlock()
	for _, pc := range pins {
		_ = pc.conn.Close()
	}
}

// do runs o in some pipeline and returns nil when
// its replies are in, or the context's error when ctx ended first.
func (b *batcher) do(ctx context.Context, o op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p := b.pool.Get().(*pending)
	p.op, p.ctx, p.at, p.err = o, ctx, time.Now(), nil
	p.state.Store(queued)
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.flushing < b.maxFlushes {
		b.flushing++
		batch := b.take()
		b.mu.Unlock()
		b.lead(batch)
	} else {
		b.mu.Unlock()
	}
	for {
		select {
		case lead := <-p.wake:
			if lead {
				batch := p.handoff
				p.handoff = nil
				b.lead(batch)
				continue
			}
			err := p.err
			b.recycle(p)
			return err
		case <-ctx.Done():
			if p.state.CompareAndSwap(queued, withdrawn) {
				return ctx.Err() // never sent; the leader drops it
			}
			// Sent, or about to be: someone must still take a flush
			// handed to this call, and the reply is dropped.
			go b.abandon(p)
			return ctx.Err()
		}
	}
}

// abandon waits in place of a caller that gave up on a sent call.
func (b *batcher) abandon(p *pending) {
	for <-p.wake {
		batch := p.handoff
		p.handoff = nil
		b.lead(batch)
	}
	b.recycle(p)
}

func (b *batcher) recycle(p *pending) {
	p.op, p.ctx, p.err = nil, nil, nil
	b.pool.Put(p)
}

// errQueueTimeout fails a call that waited in the queue for the store's
// timeout: it was never sent and charged nothing. It wraps
// context.DeadlineExceeded, so it reaches the breaker as a timeout on the
// wire does: the flushes ahead of it did not end in time, which says as
// much about Redis as a timeout of its own would.
var errQueueTimeout = fmt.Errorf("redis: queued for the store timeout without a pipeline free: %w", context.DeadlineExceeded)

// expire fails the calls of batch whose time is up, without sending them,
// and returns the others (in place) with the earliest enqueue time among
// them. An expired caller is woken at once and its call is not touched
// again.
func (b *batcher) expire(batch []*pending) (live []*pending, oldest time.Time) {
	now := time.Now()
	live = batch[:0]
	for _, p := range batch {
		if !now.Before(p.at.Add(b.s.timeout)) {
			p.err = errQueueTimeout
			p.wake <- false
			continue
		}
		if len(live) == 0 || p.at.Before(oldest) {
			oldest = p.at
		}
		live = append(live, p)
	}
	clear(batch[len(live):])
	return live, oldest
}

// take empties the queue and returns the calls in it that were not
// withdrawn, marked sent. It runs under b.mu.
func (b *batcher) take() []*pending {
	batch := b.queue
	b.queue = nil
	live := batch[:0]
	for _, p := range batch {
		if p.state.CompareAndSwap(queued, sent) {
			live = append(live, p)
		}
	}
	clear(batch[len(live):])
	return live
}

// lead flushes batch, then hands its flush slot, with everything queued
// meanwhile, to the first caller queued, or gives the slot up. Batches are
// taken from the queue under the lock, so no call is sent twice.
func (b *batcher) lead(batch []*pending) {
	batch, oldest := b.expire(batch)
	if len(batch) > 0 {
		b.flush(batch, oldest.Add(b.s.timeout))
	}
	b.mu.Lock()
	var next []*pending
	for len(b.queue) > 0 && len(next) == 0 {
		next = b.take()
	}
	if len(next) > 0 {
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

// flush sends one pipeline, due by deadline.
func (b *batcher) flush(batch []*pending, deadline time.Time) {
	parent := context.Background()
	if len(batch) == 1 {
		parent = batch[0].ctx
	}
	ctx, cancel := context.WithDeadline(parent, deadline)
	defer cancel()
	var via interface {
		redis.Scripter
		Pipeline() redis.Pipeliner
	} = b.s.client
	pc := b.pin()
	if pc != nil {
		via = pc.conn
	}
	if len(batch) == 1 {
		if o, ok := batch[0].op.(*scriptOp); ok {
			cmd := o.c.script.Run(ctx, via, o.c.keys, o.c.args...)
			o.v, o.err = cmd.Result()
			if pc != nil {
				b.unpin(pc, nil, o.err)
			}
			return
		}
	}
	pipe := via.Pipeline()
	for _, p := range batch {
		p.op.queue(ctx, pipe)
	}
	cmds, err := pipe.Exec(ctx)
	if pc != nil {
		b.unpin(pc, cmds, err)
	}
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

// cmdsOp sends commands that fn queues; fn keeps the commands to read
// their replies after the call.
type cmdsOp struct {
	fn func(ctx context.Context, pipe redis.Pipeliner)
}

func (o *cmdsOp) queue(ctx context.Context, pipe redis.Pipeliner) { o.fn(ctx, pipe) }
func (o *cmdsOp) done(context.Context, *Store)                    {}

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
