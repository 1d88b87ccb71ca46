package gateway

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestBufferPoolAllocatesNothing: handing a copy buffer out and back costs
// no allocation once the pool holds one.
func TestBufferPoolAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	b := newBufferPool()
	b.Put(b.Get())
	if n := testing.AllocsPerRun(100, func() {
		p := b.Get()
		if len(p) != copyBufferSize {
			t.Fatalf("got a %d-byte buffer, want %d", len(p), copyBufferSize)
		}
		b.Put(p)
	}); n != 0 {
		t.Fatalf("%v allocations per Get and Put, want 0", n)
	}
}

// TestSetXForwarded: setXForwarded writes what ProxyRequest.SetXForwarded
// writes (and TestSetXForwardedAllocatesOnce: with one allocation where
// that makes three).
func TestSetXForwarded(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, remote, host string
		prior              []string
		tls                bool
	}{
		{"plain", "192.0.2.1:1234", "example.com", nil, false},
		{"tls", "192.0.2.1:1234", "example.com:8443", nil, true},
		{"prior chain", "[2001:db8::1]:443", "example.com", []string{"198.51.100.7", "203.0.113.9, 10.0.0.1"}, false},
		{"no port in remote address", "192.0.2.1", "example.com", []string{"198.51.100.7"}, false},
		{"empty host", "192.0.2.1:1", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mk := func() *httputil.ProxyRequest {
				in := httptest.NewRequest("GET", "http://x/", nil)
				in.RemoteAddr, in.Host = tc.remote, tc.host
				if !tc.tls {
					in.TLS = nil
				} else {
					in.TLS = &tls.ConnectionState{}
				}
				out := in.Clone(context.Background())
				out.Header = http.Header{"Accept": {"*/*"}}
				if tc.prior != nil {
					out.Header["X-Forwarded-For"] = slices.Clone(tc.prior)
				}
				return &httputil.ProxyRequest{In: in, Out: out}
			}
			want, got := mk(), mk()
			want.SetXForwarded()
			setXForwarded(got)
			if !reflect.DeepEqual(got.Out.Header, want.Out.Header) {
				t.Fatalf("got %v, want %v", got.Out.Header, want.Out.Header)
			}
		})
	}
}

func TestSetXForwardedAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	pr := &httputil.ProxyRequest{In: httptest.NewRequest("GET", "http://x/", nil)}
	pr.In.RemoteAddr = "192.0.2.1:1234"
	pr.Out = pr.In.Clone(context.Background())
	if n := testing.AllocsPerRun(100, func() { delete(pr.Out.Header, "X-Forwarded-For"); setXForwarded(pr) }); n != 1 {
		t.Fatalf("%v allocations, want 1", n)
	}
}

// TestClientFaultAllocatesNothing: asking whether a request's body failed,
// as the gateway does after every proxied request, costs no allocation
// when it did not.
func TestClientFaultAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r := httptest.NewRequest("POST", "http://x/", strings.NewReader("body"))
	b := &clientBody{body: r.Body}
	r = r.WithContext(context.WithValue(r.Context(), clientBodyKey{}, b))
	if n := testing.AllocsPerRun(100, func() {
		if status, _ := clientFault(r, false); status != 0 {
			t.Fatalf("status %d for a body that did not fail, want 0", status)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
	b.err = os.ErrDeadlineExceeded
	if status, _ := clientFault(r, false); status != http.StatusRequestTimeout {
		t.Fatalf("status %d for a timed-out body, want 408", status)
	}
}
