package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzHostileUpstream answers the first request of a connection with the
// fuzzer's bytes and later ones properly. Through a ReverseProxy the hostile
// answer is a clean 502, or a response (complete or cut off), never a panic
// or a hang; and the two requests after it get exactly their own answers,
// whatever the hostile one left on a connection.
func FuzzHostileUpstream(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ngood 1",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: a\r\n\r\nHTTP/1.1 200 OK\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 11\r\n\r\n0123456789",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Le",
		"HTTP/1.1 2",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 999 What\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nab",
		"SSH-2.0-OpenSSH\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, hostile []byte) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go serveHostile(ln, hostile)
		tr := &Transport{ResponseHeaderTimeout: 300 * time.Millisecond, MaxResponseHeaderBytes: 4 << 10}
		defer tr.CloseIdleConnections()
		target, _ := url.Parse("http://" + ln.Addr().String())
		var tripErr error
		rp := &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
			Transport: tr,
			ErrorLog:  nopLogger,
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				tripErr = err
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadGateway)
				_, _ = io.WriteString(w, `{"error":"upstream unreachable"}`)
			},
		}
		serve := func(path string) (rec *httptest.ResponseRecorder, aborted bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			rec = httptest.NewRecorder()
			defer func() {
				if v := recover(); v != nil {
					if v != http.ErrAbortHandler {
						panic(v)
					}
					aborted = true
				}
			}()
			rp.ServeHTTP(rec, httptest.NewRequest("GET", "http://gw"+path, nil).WithContext(ctx))
			return rec, false
		}
		start := time.Now()
		rec, _ := serve("/hostile")
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("the hostile answer took %v", took)
		}
		if tripErr != nil && (rec.Code != 502 || rec.Body.String() != `{"error":"upstream unreachable"}`) {
			t.Fatalf("round trip failed (%v) but the answer was %d %q", tripErr, rec.Code, rec.Body)
		}
		for i := 1; i <= 2; i++ {
			tripErr = nil
			rec, aborted := serve(fmt.Sprintf("/good/%d", i))
			if want := fmt.Sprintf("good %d", i); aborted || rec.Code != 200 || rec.Body.String() != want {
				t.Fatalf("after %q, request %d got %d %q (aborted %v, error %v), want 200 %q", hostile, i, rec.Code, rec.Body, aborted, tripErr, want)
			}
		}
	})
}

// serveHostile answers /hostile with the raw bytes and /good/N properly,
// on every connection, until ln closes.
func serveHostile(ln net.Listener, hostile []byte) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				if req.URL.Path == "/hostile" {
					if _, err := c.Write(hostile); err != nil {
						return
					}
					continue
				}
				body := strings.ReplaceAll(strings.TrimPrefix(req.URL.Path, "/"), "/", " ")
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}
		}()
	}
}

var nopLogger = log.New(io.Discard, "", 0)
