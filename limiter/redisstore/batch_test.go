package redisstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/internal/faultproxy"
	"github.com/sluice-gateway/sluice/limiter"
)

// recordingOp counts the times it was queued into a pipeline; its one
// command increments a counter in Redis.
type recordingOp struct {
	key    string
	queued atomic.Int32
	incr   *redis.IntCmd
}

func (o *recordingOp) queue(ctx context.Context, pipe redis.Pipeliner) {
	o.queued.Add(1)
	o.incr = pipe.Incr(ctx, o.key)
}
func (o *recordingOp) done(context.Context, *Store) {}

// TestBatcherWithdrawsQueuedCalls: a call queued behind a flush that hangs
// returns as soon as its context ends, is never sent (nothing is charged),
// and the batcher keeps working after the server answers again.
func TestBatcherWithdrawsQueuedCalls(t *testing.T) {
	t.Parallel()
	m, fp, b, first, firstDone := stuckFlush(t, redis.Options{ContextTimeoutEnabled: true}, 2*time.Second)
	second := &recordingOp{key: "second"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.do(ctx, second)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("the queued call returned after %v with a 50ms deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the queued call: %v, want context.DeadlineExceeded", err)
	}
	fp.Resume()
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if err := first.incr.Err(); err != nil {
		t.Fatal(err)
	}
	if n := second.queued.Load(); n != 0 {
		t.Fatalf("the withdrawn call was sent %d times", n)
	}
	if m.Exists("second") {
		t.Fatal("the withdrawn call reached Redis")
	}
	third := &recordingOp{key: "third"}
	if err := b.do(context.Background(), third); err != nil || third.incr.Val() != 1 {
		t.Fatalf("after the withdrawal: %v, %d", err, third.incr.Val())
	}
}

// TestCallsBoundedByTimeoutBehindStuckFlushes: with both flushes stuck on
// a Redis that does not answer, calls queued behind them, without a
// deadline of their own, still return within about the store's timeout
// from when they were made. A queued call used to wait for a flush to end
// (up to the timeout) and then get a whole timeout of its own: about twice
// the timeout.
func TestCallsBoundedByTimeoutBehindStuckFlushes(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	m := miniredis.RunT(t)
	fp, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	s, err := New(nil, Options{Addrs: []string{fp.Addr()}, Clock: time.Now, Timeout: timeout, BreakerThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := &limiter.Policy{Name: "bound", Algorithm: limiter.SlidingWindow, Limit: 100, Window: time.Minute}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Allow(context.Background(), p, "warm", 1); err != nil {
		t.Fatal(err)
	}
	state := func() (flushing, queued int) {
		s.batch.mu.Lock()
		defer s.batch.mu.Unlock()
		return s.batch.flushing, len(s.batch.queue)
	}
	type outcome struct {
		took time.Duration
		err  error
	}
	call := func(key string) <-chan outcome {
		out := make(chan outcome, 1)
		go func() {
			start := time.Now()
			_, err := s.Allow(context.Background(), p, key, 1)
			out <- outcome{time.Since(start), err}
		}()
		return out
	}

	fp.Pause()
	var calls []<-chan outcome
	for _, k := range []string{"a", "b"} {
		calls = append(calls, call(k))
	}
	for f, _ := state(); f < 2; f, _ = state() {
		time.Sleep(time.Millisecond) // until both flushes are taken
	}
	for _, k := range []string{"c", "d"} {
		calls = append(calls, call(k))
	}
	for _, q := state(); q < 2; _, q = state() {
		time.Sleep(time.Millisecond) // until both calls are queued behind them
	}
	bound := timeout * 3 / 2
	for i, c := range calls {
		o := <-c
		if o.err == nil {
			t.Errorf("call %d succeeded against a paused Redis", i)
		}
		if o.took > bound {
			t.Errorf("call %d took %v with a %v timeout (want at most %v): %v", i, o.took, timeout, bound, o.err)
		}
	}
	fp.Resume()
}

// TestQueuedCallPastItsTimeIsNotSent: a call still queued when its time is
// up (here behind a flush on a client that ignores context deadlines, so
// the flush overruns) fails with a timeout, is never sent and charges
// nothing; the error counts as a failure of Redis for the breaker.
func TestQueuedCallPastItsTimeIsNotSent(t *testing.T) {
	t.Parallel()
	m, fp, b, _, firstDone := stuckFlush(t, redis.Options{ReadTimeout: time.Second}, 200*time.Millisecond)
	late := &recordingOp{key: "late"}
	err := b.do(context.Background(), late)
	if !errors.Is(err, errQueueTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the call queued past its time: %v, want errQueueTimeout", err)
	}
	if !isFailure(context.Background(), err) {
		t.Error("a call queued past its time is not a failure for the breaker")
	}
	if err := <-firstDone; err != nil {
		t.Fatal(err) // the flush read nothing and returned: its command carries the timeout
	}
	fp.Resume()
	for fp.Held() > 0 {
		time.Sleep(time.Millisecond) // until the held bytes reached Redis
	}
	if n := late.queued.Load(); n != 0 {
		t.Errorf("the call queued past its time was sent %d times", n)
	}
	if m.Exists("late") {
		t.Fatal("the call queued past its time reached Redis")
	}
	after := &recordingOp{key: "after"}
	if err := b.do(context.Background(), after); err != nil || after.incr.Val() != 1 {
		t.Fatalf("after the expiry: %v, %d", err, after.incr.Val())
	}
}

// stuckFlush starts a miniredis behind a fault proxy, a store on a client
// with opts (its address, retries and protocol set here) and the store
// timeout, and a batcher of one flush at a time whose flush of the op
// first is on the wire to a paused proxy; firstDone gets that call's error.
// Everything is closed when the test ends.
func stuckFlush(t *testing.T, opts redis.Options, timeout time.Duration) (m *miniredis.Miniredis, fp *faultproxy.Proxy, b *batcher, first *recordingOp, firstDone chan error) {
	t.Helper()
	m = miniredis.RunT(t)
	fp, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fp.Close)
	opts.Addr, opts.MaxRetries, opts.Protocol = fp.Addr(), -1, 2
	client := redis.NewClient(&opts)
	t.Cleanup(func() { client.Close() })
	s, err := New(client, Options{Clock: time.Now, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b = newBatcher(s, 1) // one flush at a time
	// A warm connection, so the first op's bytes are what the proxy holds.
	if err := b.do(context.Background(), &recordingOp{key: "warm"}); err != nil {
		t.Fatal(err)
	}
	fp.Pause()
	first = &recordingOp{key: "first"}
	firstDone = make(chan error, 1)
	go func() { firstDone <- b.do(context.Background(), first) }()
	for first.queued.Load() == 0 || fp.Held() == 0 {
		time.Sleep(time.Millisecond) // until the first flush is on the wire
	}
	return m, fp, b, first, firstDone
}
