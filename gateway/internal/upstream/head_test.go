package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"testing"
)

// sameAsRequestWrite fails t unless writeBodiless, when it takes req on,
// writes what Request.Write writes; it reports whether it took req on.
func sameAsRequestWrite(t *testing.T, req *http.Request) bool {
	t.Helper()
	var want bytes.Buffer
	werr := req.Write(&want)
	var got bytes.Buffer
	bw := bufio.NewWriter(&got)
	var keys []string
	ok, err := writeBodiless(bw, req, nil, &keys)
	if !ok {
		if got.Len() > 0 || bw.Buffered() > 0 {
			t.Fatalf("declined %v but wrote %q", req.URL, got.String())
		}
		return false
	}
	if err == nil {
		err = bw.Flush()
	}
	if werr != nil || err != nil {
		t.Fatalf("Request.Write: %v; writeBodiless: %v", werr, err)
	}
	if got.String() != want.String() {
		t.Fatalf("writeBodiless wrote\n%q\nRequest.Write writes\n%q", got.String(), want.String())
	}
	return true
}

// TestWriteBodiless: the heads writeBodiless writes are byte for byte
// those of Request.Write, and it declines what it does not handle.
func TestWriteBodiless(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mk    func() *http.Request
		taken bool
	}{
		{"proxied GET", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://127.0.0.1:8080/a/b?x=1&y=%20", nil)
			r.Header = http.Header{"User-Agent": {""}, "Accept": {"*/*"}, "X-Forwarded-For": {"192.0.2.1"},
				"X-Forwarded-Host": {"example.com"}, "X-Forwarded-Proto": {"http"}, "Cookie": {"a=1", "b=2"}}
			return r
		}, true},
		{"default user agent", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			return r
		}, true},
		{"user agent with line breaks and spaces", func() *http.Request {
			r, _ := http.NewRequest("HEAD", "http://example.com/", nil)
			r.Header.Set("User-Agent", "  curl/8\r\n x ")
			r.Header["X-Odd"] = []string{"a\nb", " padded\t", ""}
			return r
		}, true},
		{"invalid header names dropped", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			r.Header["Bad Name"] = []string{"x"}
			r.Header["Bad:Name"] = []string{"x"}
			r.Header[""] = []string{"x"}
			r.Header["Ok-Name"] = []string{"y"}
			return r
		}, true},
		{"excluded headers", func() *http.Request {
			r, _ := http.NewRequest("DELETE", "http://example.com/x", nil)
			r.Header["Host"] = []string{"other"}
			r.Header["Content-Length"] = []string{"12"}
			r.Header["Transfer-Encoding"] = []string{"chunked"}
			r.Header["Trailer"] = []string{"X"}
			return r
		}, true},
		{"Host field", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://127.0.0.1:1/", nil)
			r.Host = "api.example.com:8443"
			return r
		}, true},
		{"bodiless POST sends a length", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://example.com/", nil)
			return r
		}, true},
		{"bodiless PUT, NoBody", func() *http.Request {
			r, _ := http.NewRequest("PUT", "http://example.com/", http.NoBody)
			return r
		}, true},
		{"OPTIONS *", func() *http.Request {
			r, _ := http.NewRequest("OPTIONS", "http://example.com", nil)
			r.URL = &url.URL{Scheme: "http", Host: "example.com", Opaque: "*"}
			return r
		}, true},
		{"raw path", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/a%2Fb/c", nil)
			return r
		}, true},
		{"IPv6 host", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://[::1]:8080/", nil)
			return r
		}, true},
		{"empty method", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			r.Method = ""
			return r
		}, true},
		{"a body", func() *http.Request {
			r, _ := http.NewRequest("POST", "http://example.com/", strings.NewReader("x"))
			return r
		}, false},
		{"Close", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			r.Close = true
			return r
		}, false},
		{"zone", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://[fe80::1%25eth0]:80/", nil)
			return r
		}, false},
		{"IDN host", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://bücher.example/", nil)
			return r
		}, false},
		{"control byte in URI", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			r.URL.RawQuery = "a=\x01"
			return r
		}, false},
		{"trailer", func() *http.Request {
			r, _ := http.NewRequest("GET", "http://example.com/", nil)
			r.Trailer = http.Header{"X": nil}
			return r
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := sameAsRequestWrite(t, tc.mk()); got != tc.taken {
				t.Fatalf("taken on: %v, want %v", got, tc.taken)
			}
		})
	}
}

// TestWriteBodilessLeavesTracedWrites: a trace that watches the write
// gets Request.Write.
func TestWriteBodilessLeavesTracedWrites(t *testing.T) {
	t.Parallel()
	r, _ := http.NewRequest("GET", "http://example.com/", nil)
	var keys []string
	bw := bufio.NewWriter(io.Discard)
	if ok, _ := writeBodiless(bw, r, &httptrace.ClientTrace{WroteHeaders: func() {}}, &keys); ok {
		t.Fatal("took on a request whose trace watches the header writes")
	}
	if ok, _ := writeBodiless(bw, r, &httptrace.ClientTrace{Got1xxResponse: nil}, &keys); !ok {
		t.Fatal("declined a request whose trace does not watch the write")
	}
}

// FuzzWriteBodiless: for any method, URI, host and header, writeBodiless
// either declines or writes what Request.Write writes.
func FuzzWriteBodiless(f *testing.F) {
	f.Add("GET", "/a?b=c", "example.com:80", "X-Key", "value", "")
	f.Add("PATCH", "/", "127.0.0.1", "bad key", " v\r\n", "ua")
	f.Add("", "/%zz", "[::1]:1", "Accept", "", "\n")
	f.Fuzz(func(t *testing.T, method, path, host, key, value, ua string) {
		u, err := url.Parse("http://placeholder" + path)
		if err != nil || u.Host != "placeholder" {
			return
		}
		req := &http.Request{Method: method, URL: u, Host: host, Header: http.Header{key: {value}}}
		if ua != "" {
			req.Header["User-Agent"] = []string{ua}
		}
		sameAsRequestWrite(t, req)
	})
}

// TestWriteBodilessAllocatesNothing: Request.Write makes four allocations
// for a proxied GET's head (its fmt calls); writeBodiless none.
func TestWriteBodilessAllocatesNothing(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://127.0.0.1:8080/a?b=c", nil)
	r.Header = http.Header{"User-Agent": {""}, "Accept": {"*/*"}, "X-Forwarded-For": {"192.0.2.1"}}
	bw := bufio.NewWriter(io.Discard)
	var keys []string
	if n := testing.AllocsPerRun(100, func() {
		if ok, err := writeBodiless(bw, r, nil, &keys); !ok || err != nil {
			t.Fatalf("writeBodiless: %v, %v", ok, err)
		}
	}); n != 0 {
		t.Fatalf("%v allocations, want 0", n)
	}
}
