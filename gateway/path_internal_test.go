package gateway

import (
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/", "/", true},
		{"/a/b", "/a/b", true},
		{"/a/b/", "/a/b/", true},
		{"//a", "/a", true},
		{"/a//b///c", "/a/b/c", true},
		{"/a/./b", "/a/b", true},
		{"/a/../b", "/b", true},
		{"/a/%2e%2E/b", "/b", true},
		{"/a/b/..", "/a/", true},
		{"/a/b/.", "/a/b/", true},
		{"/..", "/", true},
		{"/../..//", "/", true},
		{"/a%2Fb/c", "/a%2Fb/c", true},
		{"/a%2F..", "/", false},
		{"/..%2fx", "", false},
		{"/x%5c..", "", false},
		{`/x\..\y`, "", false},
		{"/..;/x", "", false},
		{"/a;..", "", false},
		{"/a;b=c/d", "/a;b=c/d", true},
		{"/...", "/...", true},
		{"/.../..", "/", true},
		{"/a.b/c..d", "/a.b/c..d", true},
		{"/%2e%2e%2e", "/%2e%2e%2e", true},
		{"/%252e%252e/x", "", false},
		{"/a..%252f", "/a..%252f", true},
		{"/..%252fx", "", false},
		{"/a%00b", "", false},
		{"", "", false},
		{"a/b", "", false},
		{"*", "", false},
	} {
		got, ok := cleanPath(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("cleanPath(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestRoutingPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/a/b":                  "/a/b",
		`/private\x`:            "/private/x",
		`/\private/x`:           "/private/x",
		"/private;/x":           "/private/x",
		"/private;jsessionid=1": "/private",
		"/a;b=c/d;e":            "/a/d",
		"/a/b/":                 "/a/b/",
		"//private/x":           "/private/x", // "/%2Fprivate/x" decoded
		"/private//x//":         "/private/x/",
	} {
		if got := routingPath(in); got != want {
			t.Errorf("routingPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCleanPathDoesNotAllocateForCleanPaths(t *testing.T) {
	for _, p := range []string{"/", "/api/v1/users/42", "/static/app.min.js", "/a%2Fb/c;v=1/"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = cleanPath(p) }); n != 0 {
			t.Errorf("cleanPath(%q): %v allocations, want 0", p, n)
		}
	}
}

// FuzzCleanPath: a cleaned path is clean (cleaning it again changes
// nothing), has no dot segment and no empty segment but a trailing one.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/a/../b", "//x/./y/", "/%2e%2e/a", "/..%2f", "/a;..", `/a\b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := cleanPath(p)
		if !ok {
			return
		}
		if again, ok := cleanPath(got); !ok || again != got {
			t.Fatalf("cleanPath(%q) = %q, cleaned again %q, %v", p, got, again, ok)
		}
		segs := strings.Split(got[1:], "/")
		for i, s := range segs {
			if isDotSegment(s) != 0 || (s == "" && i < len(segs)-1) {
				t.Fatalf("cleanPath(%q) = %q keeps segment %q", p, got, s)
			}
		}
	})
}
