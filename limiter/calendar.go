package limiter

import "time"

// Calendar names the calendar period of a quota (Policy.Calendar): the
// policy counts in fixed windows that are the days, weeks or months of a
// time zone rather than multiples of Window since the Unix epoch.
type Calendar string

// The calendar periods.
const (
	CalendarDay   Calendar = "day"   // midnight to midnight
	CalendarWeek  Calendar = "week"  // Monday 00:00 to the next Monday 00:00 (ISO 8601)
	CalendarMonth Calendar = "month" // the 1st 00:00 to the next month's 1st 00:00
)

// calendarWindow is the Window a calendar policy takes: the period's
// nominal length (a month's is its longest, 31 days). The true period is
// Period's; Window only bounds how long state is kept.
func calendarWindow(c Calendar) time.Duration {
	switch c {
	case CalendarDay:
		return 24 * time.Hour
	case CalendarWeek:
		return 7 * 24 * time.Hour
	}
	return 31 * 24 * time.Hour
}

// Period returns the calendar period of cal in loc (nil means UTC) that
// holds t: start <= t < end. Periods follow the wall clock of loc, so a day
// on which daylight saving time begins lasts 23 hours and one on which it
// ends 25; where midnight does not exist (a change at 00:00) the period
// starts when the new day does. Consecutive periods meet exactly: the end
// of one is the start of the next.
func Period(cal Calendar, loc *time.Location, t time.Time) (start, end time.Time) {
	if loc == nil {
		loc = time.UTC
	}
	lt := t.In(loc)
	y, m, d := lt.Date()
	switch cal {
	case CalendarWeek:
		d -= (int(lt.Weekday()) + 6) % 7 // back to Monday
	case CalendarMonth:
		d = 1
	}
	// first is the first instant of a day: its midnight, or, where the
	// clock jumps over midnight (America/Santiago), the end of the jump;
	// time.Date would put such a midnight into the day before.
	first := func(y int, m time.Month, d int) time.Time {
		c := time.Date(y, m, d, 0, 0, 0, 0, loc)
		if noon := time.Date(y, m, d, 12, 0, 0, 0, loc); c.In(loc).YearDay() != noon.In(loc).YearDay() {
			if _, e := c.ZoneBounds(); !e.IsZero() {
				c = e
			}
		}
		return c
	}
	// next is the start of the period after the one starting at s; the
	// loop steps past a day that never was (Pacific/Apia, 30 Dec 2011),
	// for which time.Date may answer s itself.
	next := func(s time.Time) time.Time {
		y, m, d := s.In(loc).Date()
		for n := 1; ; n++ {
			var c time.Time
			switch cal {
			case CalendarWeek:
				c = first(y, m, d+7*n)
			case CalendarMonth:
				c = first(y, m+time.Month(n), 1)
			default:
				c = first(y, m, d+n)
			}
			if c.After(s) {
				return c
			}
		}
	}
	start = first(y, m, d)
	end = next(start)
	// Step forward in case t's own day began late (see first).
	for !t.Before(end) {
		start, end = end, next(end)
	}
	return start, end
}
