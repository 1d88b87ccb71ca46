package gateway

import (
	"net/http"
	"net/url"
	"strings"
)

// uncleanPath is the 400 answer to a path that cleanPath refuses.
const uncleanPath = "path cannot be cleaned: it hides a dot segment (behind %2F, %5C, a backslash, a ';' or a second escape) or holds a NUL"

// cleanPath normalises the escaped request path p so that route matching and
// the upstream see the same path: it removes dot segments (RFC 3986 5.2.4,
// with percent-encoded dots decoded first as 6.2.2.2 allows, so "%2e%2e" is
// ".."), and empty segments (duplicate slashes; a trailing slash stays). Every
// other segment is kept byte for byte, an escaped "/" (%2F) included.
//
// It reports false for a path it cannot clean without guessing how the
// upstream reads it: one that does not start with "/" or holds a NUL (%00),
// or a segment that hides a dot segment behind an escaped slash or
// backslash, a backslash, a ';' parameter or a second escape ("..%2f",
// "%2e%2e%5c", "..\", "..;", "%252e%252e"). Such paths are answered 400.
//
// It does not allocate when p is already clean.
func cleanPath(p string) (string, bool) {
	if p == "" || p[0] != '/' || strings.Contains(p, "%00") {
		return "", false
	}
	dirty := false
	last := strings.Count(p, "/") - 1 // index of the last segment
	i := 0
	for seg := range strings.SplitSeq(p[1:], "/") {
		switch {
		case seg == "" && i < last, isDotSegment(seg) != 0:
			dirty = true
		case hidesDotSegment(seg):
			return "", false
		}
		i++
	}
	if !dirty {
		return p, true
	}
	var kept []string
	trailing := false
	for seg := range strings.SplitSeq(p[1:], "/") {
		trailing = false
		switch isDotSegment(seg) {
		case 1:
			trailing = true
		case 2:
			if len(kept) > 0 {
				kept = kept[:len(kept)-1]
			}
			trailing = true
		default:
			if seg == "" {
				trailing = true
				continue
			}
			kept = append(kept, seg)
		}
	}
	out := "/" + strings.Join(kept, "/")
	if trailing && len(kept) > 0 {
		out += "/"
	}
	return out, true
}

// isDotSegment returns 1 for "." and 2 for "..", in any mix of literal and
// percent-encoded dots; else 0.
func isDotSegment(seg string) int {
	n := 0
	for seg != "" {
		switch {
		case seg[0] == '.':
			seg = seg[1:]
		case len(seg) >= 3 && seg[0] == '%' && seg[1] == '2' && (seg[2] == 'e' || seg[2] == 'E'):
			seg = seg[3:]
		default:
			return 0
		}
		if n++; n > 2 {
			return 0
		}
	}
	return n
}

// hidesDotSegment reports whether seg holds a dot segment between the
// separators that some upstreams split on though this gateway does not: an
// escaped slash or backslash, a backslash, or a ';' (path parameters).
func hidesDotSegment(seg string) bool {
	if !strings.ContainsAny(seg, `%\;`) {
		return false
	}
	if strings.Contains(seg, "%25") {
		// Escaped twice ("%252e%252e", "..%252f"): an upstream that
		// decodes twice would find a dot segment.
		once := strings.ReplaceAll(seg, "%25", "%")
		if isDotSegment(once) != 0 || hidesDotSegment(once) {
			return true
		}
	}
	start := 0
	for i := 0; i <= len(seg); i++ {
		sep := 0
		switch {
		case i == len(seg):
			sep = 1
		case seg[i] == '\\' || seg[i] == ';':
			sep = 1
		case seg[i] == '%' && i+2 < len(seg) && (seg[i+1] == '2' && (seg[i+2] == 'f' || seg[i+2] == 'F') ||
			seg[i+1] == '5' && (seg[i+2] == 'c' || seg[i+2] == 'C')):
			sep = 3
		}
		if sep == 0 {
			continue
		}
		if isDotSegment(seg[start:i]) != 0 && (start > 0 || i < len(seg)) {
			return true
		}
		start = i + sep
		i += sep - 1
	}
	return false
}

// routingPath is the decoded, cleaned path p as routes see it: read the way
// lenient upstreams read it, so that no spelling reaches a route's upstream
// past the route's policies. A backslash is a slash (as on Windows servers),
// path parameters (";jsessionid=..." to the end of a segment, as in Java
// servers) are dropped, and the empty segments this leaves collapse, as do
// those of an escaped slash ("/%2Fprivate" is "//private" decoded, which an
// upstream that merges slashes reads as "/private"). It allocates only for
// paths that hold a backslash, a ';' or "//".
func routingPath(p string) string {
	if !strings.ContainsAny(p, `\;`) && !strings.Contains(p, "//") {
		return p
	}
	b := make([]byte, 0, len(p))
	inParam := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '/' || c == '\\':
			inParam = false
			if len(b) > 0 && b[len(b)-1] == '/' {
				continue
			}
			b = append(b, '/')
		case c == ';':
			inParam = true
		case !inParam:
			b = append(b, c)
		}
	}
	return string(b)
}

// cleanRequestPath cleans r's path in place (see cleanPath) and reports
// false when it cannot be cleaned.
func cleanRequestPath(r *http.Request) bool {
	if r.URL.Opaque != "" {
		return false
	}
	escaped := r.URL.EscapedPath()
	clean, ok := cleanPath(escaped)
	if !ok {
		return false
	}
	if clean == escaped {
		return true
	}
	path, err := url.PathUnescape(clean)
	if err != nil {
		return false
	}
	r.URL.Path, r.URL.RawPath = path, clean
	return true
}
