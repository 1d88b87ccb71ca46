// Command accuracy replays a bursty synthetic trace and an adversarial
// boundary trace through every algorithm on the memory store and prints,
// per algorithm, the mean estimate error against an exact log and the most
// admitted in any span of one window.
//
//	go run ./accuracy            (from benchmarks/)
//	go run ./accuracy -markdown  (the table for RESULTS.md)
package main

import (
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/memstore"
)

func main() {
	limit := flag.Int64("limit", 100, "limit per window")
	window := flag.Duration("window", time.Minute, "window")
	windows := flag.Int("windows", 60, "length of the bursty trace, in windows")
	markdown := flag.Bool("markdown", false, "print a Markdown table")
	flag.Parse()

	type row struct {
		name   string
		policy limiter.Policy
	}
	rows := []row{
		{"sliding_window buckets=1", limiter.Policy{Algorithm: limiter.SlidingWindow, Buckets: 1}},
		{"sliding_window buckets=10", limiter.Policy{Algorithm: limiter.SlidingWindow, Buckets: 10}},
		{"sliding_window buckets=60", limiter.Policy{Algorithm: limiter.SlidingWindow, Buckets: 60}},
		{"sliding_log", limiter.Policy{Algorithm: limiter.SlidingLog}},
		{"fixed_window", limiter.Policy{Algorithm: limiter.FixedWindow}},
		{"gcra burst=limit", limiter.Policy{Algorithm: limiter.GCRA}},
	}
	newStore := func(clock func() time.Time) limiter.Store {
		return memstore.New(memstore.Options{Clock: clock, SweepInterval: -1})
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	if *markdown {
		fmt.Println("| algorithm | bursty: mean estimate error | bursty: decisions differing from exact | bursty: max in one window | adversarial: max in one window | stated bound |")
		fmt.Println("|---|---|---|---|---|---|")
	} else {
		fmt.Fprintln(w, "algorithm\tbursty mean err\tbursty differing\tbursty max/window\tadversarial max/window\tbound")
	}
	for _, r := range rows {
		p := r.policy
		p.Name, p.Limit, p.Window = "acc", *limit, *window
		if err := p.Validate(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var bursty limitertest.Accuracy
		for seed := range uint64(3) {
			a := limitertest.Measure(&p, limitertest.BurstyTrace(seed, p.Limit, p.Window, time.Duration(*windows)*p.Window), newStore)
			bursty.MeanError += a.MeanError / 3
			bursty.Differing += a.Differing / 3
			bursty.MaxInSpan = max(bursty.MaxInSpan, a.MaxInSpan)
		}
		var adversarial int64
		for _, step := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond} {
			a := limitertest.Measure(&p, limitertest.AdversarialTrace(p.Limit, p.Window, p.Buckets, step), newStore)
			adversarial = max(adversarial, a.MaxInSpan)
		}
		bound := "-"
		switch p.Algorithm {
		case limiter.SlidingWindow:
			bound = fmt.Sprint(p.Limit + p.Limit/int64(p.Buckets))
		case limiter.SlidingLog:
			bound = fmt.Sprint(p.Limit)
		case limiter.FixedWindow, limiter.GCRA:
			bound = fmt.Sprint(2 * p.Limit)
		}
		if *markdown {
			fmt.Printf("| %s | %.2f%% | %.2f%% | %d | %d | %s |\n", r.name, 100*bursty.MeanError, 100*bursty.Differing, bursty.MaxInSpan, adversarial, bound)
		} else {
			fmt.Fprintf(w, "%s\t%.2f%%\t%.2f%%\t%d\t%d\t%s\n", r.name, 100*bursty.MeanError, 100*bursty.Differing, bursty.MaxInSpan, adversarial, bound)
		}
	}
	w.Flush()
}
