package memstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

// MustOpen opens a durable store on path and closes it when the test ends.
func MustOpen(t testing.TB, path string, clock func() time.Time) *memstore.Store {
	t.Helper()
	s, err := memstore.Open(memstore.Options{Path: path, Clock: clock, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestDurableConformance(t *testing.T) {
	t.Parallel()
	limitertest.Run(t, func(t *testing.T) *limitertest.Harness {
		clock := limitertest.NewClock(limitertest.Start)
		s := MustOpen(t, filepath.Join(t.TempDir(), "sluice.db"), clock.Now)
		return &limitertest.Harness{
			Store: s, Advance: clock.Advance, Now: clock.Now,
			GCRAFollowsAdvance: true, RecordsFollowAdvance: true,
			Expired: func(t *testing.T) bool { s.Sweep(); return s.Len() == 0 },
		}
	})
}

func ptr(v int64) *int64 { return &v }

// TestDurableReopen: counters with their bounds, idempotency records and
// history are there after Close and Open; records still expire on time.
func TestDurableReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sluice.db")
	clock := limitertest.NewClock(limitertest.Start)
	s, err := memstore.Open(memstore.Options{Path: path, Clock: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	w := s.Counters().(limiter.CounterWriter)
	big := int64(1)<<62 + 1
	if _, err := s.Counters().Set(ctx, limiter.Counter{Name: "seats", Value: big, Min: ptr(-1), Max: ptr(big + 1)}); err != nil {
		t.Fatal(err)
	}
	limitertest.MustWrite(t, w, limiter.CounterOp{Kind: limiter.OpAdd, Name: "jobs", Delta: 3}, "once")
	v := int64(3)
	if err := s.AddHistory(ctx, "counter:jobs", []limiter.Point{{Minute: clock.Now(), Value: &v, Admitted: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	clock.Advance(time.Hour)
	s = MustOpen(t, path, clock.Now)
	w = s.Counters().(limiter.CounterWriter)
	list, err := s.Counters().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "jobs" || list[0].Value != 3 || list[1].Value != big || *list[1].Min != -1 || *list[1].Max != big+1 {
		t.Fatalf("after reopening: %+v, want jobs=3 and seats=2^62+1 in [-1, 2^62+2]", list)
	}
	if res := limitertest.MustWrite(t, w, limiter.CounterOp{Kind: limiter.OpAdd, Name: "jobs", Delta: 3}, "once"); !res.Replayed || res.Counter.Value != 3 {
		t.Fatalf("a repeat after reopening: %+v, want the first answer", res)
	}
	points, err := s.History(ctx, "counter:jobs", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(points) != 1 || points[0].Admitted != 2 || points[0].Value == nil || *points[0].Value != 3 {
		t.Fatalf("history after reopening: %+v", points)
	}
	clock.Advance(limiter.IdempotencyTTL)
	if res := limitertest.MustWrite(t, w, limiter.CounterOp{Kind: limiter.OpAdd, Name: "jobs", Delta: 3}, "once"); res.Replayed || res.Counter.Value != 6 {
		t.Fatalf("the key a day later: %+v, want a new write to 6", res)
	}
}

// TestDurableAcknowledgedIsOnDisk: 50 concurrent writers; a copy of the
// file taken before Close, as a crash would leave it, holds every
// acknowledged increment.
func TestDurableAcknowledgedIsOnDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.db")
	s := MustOpen(t, path, nil)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 20 {
				if _, err := s.Counters().Add(context.Background(), "jobs", 1); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.db")
	if err := os.WriteFile(crashed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := MustOpen(t, crashed, nil).Counters().Get(context.Background(), "jobs")
	if err != nil || c.Value != 1000 {
		t.Fatalf("the file as a crash leaves it: %+v %v, want 1000", c, err)
	}
}

func TestDurableOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sluice.db")
	MustOpen(t, path, nil)
	start := time.Now()
	if _, err := memstore.Open(memstore.Options{Path: path}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second Open of a held file: %v, want an 'in use' error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the second Open took %v", took)
	}
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := memstore.Open(memstore.Options{Path: garbage}); err == nil || !strings.Contains(err.Error(), garbage) {
		t.Fatalf("Open of a garbage file: %v, want an error naming it", err)
	}
	if _, err := memstore.Open(memstore.Options{Path: filepath.Join(dir, "no", "such", "dir", "x.db")}); err == nil {
		t.Fatal("Open in a missing directory: no error")
	}
}

func TestDurableWriteAfterClose(t *testing.T) {
	t.Parallel()
	s, err := memstore.Open(memstore.Options{Path: filepath.Join(t.TempDir(), "sluice.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Counters().Add(context.Background(), "jobs", 1); !errors.Is(err, memstore.ErrClosed) {
		t.Fatalf("Add after Close: %v, want ErrClosed", err)
	}
}

// BenchmarkDurableIncrement measures acknowledged (fsynced) increments of
// one counter by 50 concurrent writers, group-committed:
//
//	go test ./limiter/memstore -run '^$' -bench DurableIncrement -benchtime 5s
func BenchmarkDurableIncrement(b *testing.B) {
	s, err := memstore.Open(memstore.Options{Path: filepath.Join(b.TempDir(), "sluice.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.SetParallelism((50 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.Counters().Add(ctx, "jobs", 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "increments/s")
}

// TestDurableOverridesSurviveReopen: run-time overrides are on disk when
// acknowledged, deletes too, and a reopened store has exactly them.
func TestDurableOverridesSurviveReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sluice.db")
	clock := limitertest.NewClock(limitertest.Start)
	s, err := memstore.Open(memstore.Options{Path: path, Clock: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]int64{"alice": 50, "bob": 7, "a\x00b": 3} {
		if err := s.SetOverride(ctx, "per-key", k, v); err != nil {
			t.Fatal(err)
		}
	}
	if had, err := s.DeleteOverride(ctx, "per-key", "bob"); err != nil || !had {
		t.Fatalf("DeleteOverride(bob) = %v, %v; want true", had, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOverride(ctx, "per-key", "carol", 1); err == nil {
		t.Fatal("SetOverride on a closed store succeeded")
	}
	s = MustOpen(t, path, clock.Now)
	got, err := s.ListOverrides(ctx, "per-key")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"alice": 50, "a\x00b": 3}
	if len(got) != len(want) || got["alice"] != 50 || got["a\x00b"] != 3 {
		t.Fatalf("after reopen: %v, want %v", got, want)
	}
}
