package limitertest

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// testRuntimeOverrides checks the Overrider ability: overrides round-trip
// binary keys, are shared with a peer process, win over configured
// overrides once read into Policy.Live, and go away on delete.
func testRuntimeOverrides(t *testing.T, h *Harness) {
	ctx := context.Background()
	o, ok := h.Store.(limiter.Overrider)
	if !ok {
		t.Fatalf("%T does not implement limiter.Overrider", h.Store)
	}
	p := &limiter.Policy{Name: "live", Algorithm: limiter.FixedWindow, Limit: 2, Window: time.Hour,
		Overrides: map[string]int64{"vip": 3}, Live: &limiter.LiveLimits{}}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	refresh := func(s limiter.Overrider) map[string]int64 {
		t.Helper()
		m, err := s.ListOverrides(ctx, p.Name)
		if err != nil {
			t.Fatalf("ListOverrides: %v", err)
		}
		p.Live.Replace(m)
		return m
	}
	if m := refresh(o); len(m) != 0 {
		t.Fatalf("fresh store lists %v, want no overrides", m)
	}
	if err := o.SetOverride(ctx, p.Name, "vip", 0); err == nil {
		t.Fatal("SetOverride with limit 0 succeeded, want an error")
	}
	odd := "a/b\x00\xff{x}"
	for k, v := range map[string]int64{"vip": 5, odd: 1, "gold": 9} {
		if err := o.SetOverride(ctx, p.Name, k, v); err != nil {
			t.Fatalf("SetOverride(%q): %v", k, err)
		}
	}
	if err := o.SetOverride(ctx, p.Name, "gold", 4); err != nil { // replaces 9
		t.Fatal(err)
	}
	if err := o.SetOverride(ctx, "other", "vip", 100); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"vip": 5, odd: 1, "gold": 4}
	if m := refresh(o); !maps.Equal(m, want) {
		t.Fatalf("ListOverrides = %v, want %v", m, want)
	}
	if h.Peer != nil {
		peer := h.Peer(t).(limiter.Overrider)
		if m, err := peer.ListOverrides(ctx, p.Name); err != nil || !maps.Equal(m, want) {
			t.Fatalf("peer lists %v, %v; want %v", m, err, want)
		}
	}
	// The live limit (5) wins over the configured one (3).
	if got := admitted(t, h.Store, p, "vip", 10); got != 5 {
		t.Fatalf("vip admitted %d, want its live limit 5", got)
	}
	if got := admitted(t, h.Store, p, odd, 3); got != 1 {
		t.Fatalf("odd key admitted %d, want its live limit 1", got)
	}
	if got := admitted(t, h.Store, p, "plain", 5); got != 2 {
		t.Fatalf("plain key admitted %d, want the policy limit 2", got)
	}
	for _, tc := range []struct {
		key  string
		want bool
	}{{"vip", true}, {"vip", false}, {"never", false}} {
		had, err := o.DeleteOverride(ctx, p.Name, tc.key)
		if err != nil || had != tc.want {
			t.Fatalf("DeleteOverride(%q) = %v, %v; want %v", tc.key, had, err, tc.want)
		}
	}
	refresh(o)
	if u := MustPeek(t, h.Store, p, "vip"); u.Limit != 3 {
		t.Fatalf("vip limit after delete %d, want the configured 3", u.Limit)
	}
	if m, err := o.ListOverrides(ctx, "other"); err != nil || !maps.Equal(m, map[string]int64{"vip": 100}) {
		t.Fatalf("other policy lists %v, %v; want vip:100", m, err)
	}
}
