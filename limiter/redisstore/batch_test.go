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
	m := miniredis.RunT(t)
	fp, err := faultproxy.Start(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fp.Close()
	client := redis.NewClient(&redis.Options{Addr: fp.Addr(), MaxRetries: -1, Protocol: 2, ContextTimeoutEnabled: true})
	defer client.Close()
	s, err := New(client, Options{Clock: time.Now, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := newBatcher(s, 1) // one flush at a time

	// A warm connection, so the first op's bytes are what the proxy holds.
	if err := b.do(context.Background(), &recordingOp{key: "warm"}); err != nil {
		t.Fatal(err)
	}
	fp.Pause()
	first := &recordingOp{key: "first"}
	firstDone := make(chan error, 1)
	go func() { firstDone <- b.do(context.Background(), first) }()
	for first.queued.Load() == 0 || fp.Held() == 0 {
		time.Sleep(time.Millisecond) // until the first flush is on the wire
	}

	second := &recordingOp{key: "second"}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = b.do(ctx, second)
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
