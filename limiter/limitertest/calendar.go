package limitertest

import (
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// testCalendar moves the clock across a month end and across the start of
// daylight saving time in Europe/Berlin: a calendar quota resets exactly
// when the month (or day) of that zone ends, and its reset and retry times
// say so.
func testCalendar(t *testing.T, h *Harness) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	policy := func(name string, cal limiter.Calendar) *limiter.Policy {
		p := &limiter.Policy{Name: name, Limit: 3, Calendar: cal, Location: berlin}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	month, day := policy("cal-month", limiter.CalendarMonth), policy("cal-day", limiter.CalendarDay)
	now := Start
	if h.Now != nil {
		now = h.Now()
	}
	advanceTo := func(t2 time.Time) {
		t.Helper()
		if !t2.After(now) {
			t.Fatalf("clock at %v, cannot go back to %v", now, t2)
		}
		h.Advance(t2.Sub(now))
		now = t2
	}
	// wantPeriod admits 3 of 4 and checks that the quota frees in left.
	wantPeriod := func(p *limiter.Policy, left time.Duration, why string) {
		t.Helper()
		var last limiter.Decision
		got := 0
		for range 4 {
			last = MustAllow(t, h.Store, p, "k", 1)
			if last.Allowed {
				got++
			}
		}
		if got != 3 {
			t.Fatalf("%s: admitted %d, want 3", why, got)
		}
		if last.Allowed || last.RetryAfter.Round(time.Millisecond) != left || last.ResetAfter.Round(time.Millisecond) != left {
			t.Fatalf("%s: rejection %+v, want retry and reset after %v", why, last, left)
		}
	}
	// 23:59:59 on 31 January in Berlin (CET, UTC+1).
	advanceTo(time.Date(2030, 1, 31, 22, 59, 59, 0, time.UTC))
	wantPeriod(month, time.Second, "the last second of January")
	advanceTo(time.Date(2030, 1, 31, 23, 0, 0, 0, time.UTC))
	wantPeriod(month, 28*24*time.Hour, "1 February 00:00") // February 2030 has 28 days, all CET
	// 30 March 2030 is the last day of CET: 31 March lasts 23 hours.
	advanceTo(time.Date(2030, 3, 30, 23, 30, 0, 0, time.UTC)) // 00:30 CET on 31 March
	wantPeriod(day, 22*time.Hour+30*time.Minute, "the day daylight saving time begins")
	// March ends at midnight CEST, 22:00 UTC, not 23:00.
	advanceTo(time.Date(2030, 3, 31, 21, 59, 59, 0, time.UTC))
	wantPeriod(month, time.Second, "the last second of March, in CEST")
	advanceTo(time.Date(2030, 3, 31, 22, 0, 0, 0, time.UTC))
	wantPeriod(month, 30*24*time.Hour, "1 April 00:00 CEST")
	if u := MustPeek(t, h.Store, month, "k"); u.Count != 3 || u.Remaining != 0 {
		t.Fatalf("peek in April: %+v, want count 3 remaining 0", u)
	}
}
