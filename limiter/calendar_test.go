package limiter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
)

// TestPeriod: every instant lies in exactly one period; periods meet
// exactly and start at local midnight (on a Monday, on the 1st), in zones
// with daylight saving time at 02:00, at midnight (Santiago), by half an
// hour (Lord Howe), and with a day that never was (Apia, 30 Dec 2011).
func TestPeriod(t *testing.T) {
	t.Parallel()
	for _, zone := range []string{"UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Australia/Lord_Howe", "Pacific/Apia", "Asia/Kolkata"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, cal := range []limiter.Calendar{limiter.CalendarDay, limiter.CalendarWeek, limiter.CalendarMonth} {
			t.Run(zone+"/"+string(cal), func(t *testing.T) {
				t.Parallel()
				for _, span := range [][2]time.Time{
					{time.Date(2011, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2012, 3, 1, 0, 0, 0, 0, time.UTC)},
					{time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)},
				} {
					start, end := limiter.Period(cal, loc, span[0])
					for ts := span[0]; ts.Before(span[1]); ts = ts.Add(37 * time.Minute) {
						s, e := limiter.Period(cal, loc, ts)
						if ts.Before(s) || !ts.Before(e) {
							t.Fatalf("%v: period [%v, %v) does not hold it", ts, s, e)
						}
						if s.Equal(start) {
							if !e.Equal(end) {
								t.Fatalf("%v: end %v, want %v", ts, e, end)
							}
							continue
						}
						if !s.Equal(end) {
							t.Fatalf("%v: period starts %v, want the previous end %v", ts, s, end)
						}
						start, end = s, e
						ls := s.In(loc)
						if cal == limiter.CalendarMonth && ls.Day() != 1 && ls.Hour() < 12 {
							t.Fatalf("month starts %v", ls)
						}
						if cal == limiter.CalendarWeek && ls.Weekday() != time.Monday {
							t.Fatalf("week starts %v", ls)
						}
						if ls.Hour() > 1 || ls.Minute() != 0 && ls.Minute() != 30 {
							t.Fatalf("period starts at %v, want midnight (or the end of a DST gap)", ls)
						}
						if n := e.Sub(s); cal == limiter.CalendarDay && (n < 22*time.Hour || n > 26*time.Hour) && zone != "Pacific/Apia" {
							t.Fatalf("day [%v, %v) lasts %v", s.In(loc), e.In(loc), n)
						}
					}
				}
			})
		}
	}
}

// TestPeriodBerlin pins the periods around Europe/Berlin's DST changes.
func TestPeriodBerlin(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utc := func(mo time.Month, d, h int) time.Time { return time.Date(2030, mo, d, h, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		cal        limiter.Calendar
		at         time.Time
		start, end time.Time
	}{
		{limiter.CalendarDay, utc(3, 31, 12), utc(3, 30, 23), utc(3, 31, 22)},    // 23 hours
		{limiter.CalendarDay, utc(10, 27, 12), utc(10, 26, 22), utc(10, 27, 23)}, // 25 hours
		{limiter.CalendarMonth, utc(3, 31, 21), utc(2, 28, 23), utc(3, 31, 22)},
		{limiter.CalendarMonth, utc(12, 31, 23), utc(12, 31, 23), time.Date(2031, 1, 31, 23, 0, 0, 0, time.UTC)},
		{limiter.CalendarWeek, utc(1, 1, 12), time.Date(2029, 12, 30, 23, 0, 0, 0, time.UTC), utc(1, 6, 23)}, // 1 Jan 2030 is a Tuesday
	} {
		s, e := limiter.Period(tc.cal, berlin, tc.at)
		if !s.Equal(tc.start) || !e.Equal(tc.end) {
			t.Errorf("%s at %v: [%v, %v), want [%v, %v)", tc.cal, tc.at, s, e, tc.start, tc.end)
		}
	}
}

// TestCalendarValidate: a calendar quota is a fixed window of its period.
func TestCalendarValidate(t *testing.T) {
	t.Parallel()
	utc := time.UTC
	for _, tc := range []struct {
		p    limiter.Policy
		want string
	}{
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "day"}, ""},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "day", Window: 24 * time.Hour}, ""},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "week", Window: 7 * 24 * time.Hour, Algorithm: limiter.FixedWindow}, ""},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "month"}, ""},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "month", Window: 31 * 24 * time.Hour}, ""}, // validated twice
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "month", Window: 30 * 24 * time.Hour}, "window: a calendar month is a calendar month"},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "day", Window: time.Hour}, "window: a calendar day is a day"},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "day", Algorithm: limiter.SlidingWindow}, "algorithm: a calendar quota counts in fixed windows"},
		{limiter.Policy{Name: "a", Limit: 1, Calendar: "year"}, `calendar: must be day, week or month, got "year"`},
		{limiter.Policy{Name: "a", Limit: 1, Window: time.Hour, Location: utc}, "timezone: applies to calendar quotas only"},
	} {
		err := tc.p.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.p, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want %q", tc.p, err, tc.want)
		case tc.want == "" && tc.p.Algorithm != limiter.FixedWindow:
			t.Errorf("%+v: algorithm %q, want fixed_window", tc.p, tc.p.Algorithm)
		}
	}
}
