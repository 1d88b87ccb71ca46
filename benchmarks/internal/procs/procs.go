// Package procs holds the process plumbing that the load programs under
// cmd/ share: free loopback ports, waiting for a listener, wrk's latency
// figures, the upstream, nginx, and CPU time from /proc.
package procs

import (
	"log"
	"net"
	"strconv"
	"strings"
	"time"
)

// FreeAddr returns a loopback address with a port that is free now.
func FreeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WaitUp waits up to 10 s for something to accept connections on addr and
// exits the program when nothing does.
func WaitUp(addr string) {
	for range 400 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	log.Fatalf("nothing listens on %s", addr)
}

// WrkMS converts one of wrk's latency figures ("812.00us", "3.20ms", "1.01s")
// to milliseconds; 0 when it has no known unit.
func WrkMS(v string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 0.001}, {"ms", 1}, {"s", 1000}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			f, _ := strconv.ParseFloat(n, 64)
			return f * u.ms
		}
	}
	return 0
}
