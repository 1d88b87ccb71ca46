package gateway_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkProxy sends requests through the in-process gateway to an
// upstream on loopback, with no policy and with one sliding_window policy on
// the memory store; the client runs in the same process.
//
//	go test ./gateway -run '^$' -bench Proxy -cpuprofile cpu.out
func BenchmarkProxy(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from the upstream\n")
	}))
	defer up.Close()
	for _, tc := range []struct{ name, policies, routePolicies string }{
		{"no-policy", "", ""},
		{"memory-sliding_window", "policies: { p: { limit: 1000000000, window: 1m } }\n", ", policies: [p]"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\nlog: { access: false }\n" + tc.policies +
				"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"" + up.URL + "\" }" + tc.routePolicies + " }\n"
			h := startGateway(b, cfg)
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(h.proxy + "/x")
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// BenchmarkProxyHop measures the gateway's own cost per proxied request,
// for each upstream transport: a raw keep-alive client and a raw upstream
// (a few lines of wire format each, allocating nothing per request) talk
// to the real gateway over loopback, so ns/op and allocs/op are mostly the
// gateway's. GET has no body; POST carries 1 KB. Each goroutine of
// RunParallel has its own client connection.
//
//	go test ./gateway -run '^$' -bench ProxyHop -benchmem -count 6 | benchstat -
func BenchmarkProxyHop(b *testing.B) {
	up := rawHopUpstream(b)
	for _, tr := range []string{"fast", "standard"} {
		cfg := withTransport(tr, "listen: \"127.0.0.1:0\"\nadmin: { listen: \"127.0.0.1:0\", token: x }\nlog: { access: false }\n"+
			"routes:\n  - { name: up, match: { path_prefix: / }, upstream: { url: \"http://"+up+"\" } }\n")
		h := startGateway(b, cfg)
		addr := strings.TrimPrefix(h.proxy, "http://")
		for _, m := range []struct{ name, req string }{
			{"GET", "GET /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: hop\r\nAccept: */*\r\n\r\n"},
			{"POST1K", "POST /x HTTP/1.1\r\nHost: bench\r\nUser-Agent: hop\r\nContent-Type: application/octet-stream\r\nContent-Length: 1024\r\n\r\n" + strings.Repeat("x", 1024)},
		} {
			b.Run(tr+"/"+m.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.Close()
					br := bufio.NewReader(c)
					req := []byte(m.req)
					for pb.Next() {
						if _, err := c.Write(req); err != nil {
							b.Error(err)
							return
						}
						status, err := readHopMessage(br)
						if err != nil || status != "HTTP/1.1 200 OK" {
							b.Errorf("got %q, %v; want HTTP/1.1 200 OK", status, err)
							return
						}
					}
				})
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// processCPU returns the user and system CPU time of the process so far:
// per op, a measure of work that a loaded machine's waiting leaves out.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readHopMessage reads one HTTP/1.1 message with a Content-Length (or
// none) from br and returns its first line.
func readHopMessage(br *bufio.Reader) (string, error) {
	first := ""
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return first, err
		}
		if first == "" {
			first = string(bytes.TrimRight(line, "\r\n"))
			continue
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && strings.EqualFold(string(line[:15]), "content-length:") {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(line[15:])))
		}
	}
	_, err := br.Discard(n)
	return first, err
}

// rawHopUpstream answers every request on its connections with a fixed
// 24-byte response, and returns its address.
func rawHopUpstream(b *testing.B) string {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nhello from the upstream\n")
	return rawUpstream(b, func(c net.Conn, br *bufio.Reader) {
		for {
			if _, err := readHopMessage(br); err != nil {
				return
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// rawUpstream listens on loopback and serves each connection with serve
// (which reads through br), closing it when serve returns, until the test
// ends; it returns the address.
func rawUpstream(tb testing.TB, serve func(c net.Conn, br *bufio.Reader)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}
