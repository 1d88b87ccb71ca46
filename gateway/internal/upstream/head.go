package upstream

import (
	"bufio"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
)

// defaultUserAgent is what Request.Write sends when a request has no
// User-Agent header at all.
const defaultUserAgent = "Go-http-client/1.1"

// writeBodiless writes the head of a request without a body (a proxied
// GET, HEAD, DELETE...) to w, byte for byte as Request.Write would, without
// its fmt calls and their allocations. It returns false, having written
// nothing, for any request it does not take on: one with a body, a
// transfer encoding, trailers or Close, CONNECT, a Host or URI that
// Request.Write would change or refuse, or a trace that wants to see the
// write. Its keys hold the sorted header names between calls.
func writeBodiless(w *bufio.Writer, req *http.Request, trace *httptrace.ClientTrace, keys *[]string) (bool, error) {
	if (req.Body != nil && req.Body != http.NoBody) || req.ContentLength != 0 ||
		len(req.TransferEncoding) > 0 || req.Trailer != nil || req.Close ||
		req.Method == http.MethodConnect || req.URL == nil {
		return false, nil
	}
	if trace != nil && (trace.WroteHeaderField != nil || trace.WroteHeaders != nil || trace.WroteRequest != nil) {
		return false, nil
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !plainHost(host) {
		return false, nil
	}
	// The request URI as URL.RequestURI makes it, in its two parts
	// (joining them would allocate).
	path, query := req.URL.Opaque, ""
	if path == "" {
		if path = req.URL.EscapedPath(); path == "" {
			path = "/"
		}
	} else if strings.HasPrefix(path, "//") {
		return false, nil
	}
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		query = req.URL.RawQuery
		if hasCTL(query) {
			return false, nil
		}
	}
	if hasCTL(path) {
		return false, nil
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(path)
	if req.URL.ForceQuery || req.URL.RawQuery != "" {
		w.WriteByte('?')
		w.WriteString(query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	ua := defaultUserAgent
	if _, ok := req.Header["User-Agent"]; ok {
		ua = req.Header.Get("User-Agent")
	}
	if ua != "" {
		w.WriteString("User-Agent: ")
		w.WriteString(fieldValue(ua))
		w.WriteString("\r\n")
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		// Many servers expect a length for these methods, as
		// Request.Write knows.
		w.WriteString("Content-Length: 0\r\n")
	}
	ks := (*keys)[:0]
	for k := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if validFieldName(k) { // Request.Write drops the others
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	for _, k := range ks {
		for _, v := range req.Header[k] {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(fieldValue(v))
			w.WriteString("\r\n")
		}
	}
	clear(ks)
	*keys = ks[:0]
	_, err := w.WriteString("\r\n")
	return true, err
}

// hasCTL reports whether s holds a control byte, which Request.Write
// refuses in a URI.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' || b == 0x7f {
			return true
		}
	}
	return false
}

var newlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

// fieldValue is a header value as Request.Write sends it: line breaks
// become spaces, and surrounding white space goes.
func fieldValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = newlineToSpace.Replace(v)
	}
	return textproto.TrimString(v)
}

// plainHost reports whether Request.Write sends host as it is: a non-empty
// name or address of letters, digits and ".-_:[]" (no IPv6 zone, nothing
// to encode as punycode, nothing it would refuse).
func plainHost(host string) bool {
	if host == "" {
		return false
	}
	for i := 0; i < len(host); i++ {
		switch b := host[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '.', b == '-', b == '_', b == ':', b == '[', b == ']':
		default:
			return false
		}
	}
	return true
}

// validFieldName reports whether k is an HTTP token (RFC 9110 5.1).
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0:
		default:
			return false
		}
	}
	return true
}
