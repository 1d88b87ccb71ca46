package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
)

const clientUsage = `admin client (sluice keys | counters):
  sluice keys top POLICY [-n N]         the busiest keys of a policy
  sluice keys get POLICY KEY            one key's usage
  sluice keys reset POLICY KEY          reset a key
                                        (KEY as keys top prints it; a key
                                        that is not printable is "quoted")
  sluice counters list
  sluice counters get NAME
  sluice counters incr|decr NAME [BY]
  sluice counters set NAME VALUE [-min N] [-max N]   (negative numbers work: set x -5)
  sluice counters delete NAME
flags, anywhere: -admin ADDR (default $SLUICE_ADMIN__LISTEN or 127.0.0.1:9090),
  -token TOKEN (default $SLUICE_ADMIN__TOKEN, else the token file that a
  gateway with no admin.token wrote); "--" ends the flags
`

// client is the admin client: `sluice keys ...` and `sluice counters ...`.
func (p *Program) client(cmd string, args []string) int {
	stdout, stderr := p.Stdout, p.Stderr
	fs := p.newFlags("sluice " + cmd)
	addr := fs.String("admin", p.getenv("SLUICE_ADMIN__LISTEN", "127.0.0.1:9090"), "admin listener address")
	token := fs.String("token", p.getenv("SLUICE_ADMIN__TOKEN", ""), "admin token")
	n := fs.Int("n", 20, "how many keys (keys top)")
	minV := fs.String("min", "", "lower bound (counters set)")
	maxV := fs.String("max", "", "upper bound (counters set)")
	flags, a := splitArgs(fs, args)
	if code := p.parse(fs, flags, "usage: sluice "+cmd+" ...\n"+clientUsage); code >= 0 {
		return code
	}
	if len(a) > 0 && a[0] == "help" {
		fmt.Fprint(stdout, "usage: sluice "+cmd+" ...\n"+clientUsage)
		return 0
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(*addr, "http://"))
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: -admin %q: %v\n", cmd, *addr, err)
		return 2
	}
	if wildcardHost.MatchString(host) {
		host = "127.0.0.1"
	}
	if *token == "" {
		// A gateway with no admin.token on loopback wrote a generated one.
		if b, err := os.ReadFile(gateway.TokenFile(p.TokenDir, *addr)); err == nil {
			*token = strings.TrimSpace(string(b))
		}
	}
	c := &adminClient{base: "http://" + net.JoinHostPort(host, port), token: *token, http: &http.Client{Timeout: 10 * time.Second}}
	esc := url.PathEscape
	var method, path, body string
	switch {
	case cmd == "keys" && len(a) == 2 && a[0] == "top":
		method, path = "GET", "/v1/policies/"+esc(a[1])+"/keys?limit="+strconv.Itoa(*n)
	case cmd == "keys" && len(a) == 3 && a[0] == "get":
		method, path = "GET", "/v1/policies/"+esc(a[1])+"/keys/"+esc(keyArg(a[2]))
	case cmd == "keys" && len(a) == 3 && a[0] == "reset":
		method, path = "DELETE", "/v1/policies/"+esc(a[1])+"/keys/"+esc(keyArg(a[2]))
	case cmd == "counters" && len(a) == 1 && a[0] == "list":
		method, path = "GET", "/v1/counters"
	case cmd == "counters" && len(a) == 2 && a[0] == "get":
		method, path = "GET", "/v1/counters/"+esc(a[1])
	case cmd == "counters" && len(a) == 2 && a[0] == "delete":
		method, path = "DELETE", "/v1/counters/"+esc(a[1])
	case cmd == "counters" && (len(a) == 2 || len(a) == 3) && (a[0] == "incr" || a[0] == "decr"):
		verb := map[string]string{"incr": "increment", "decr": "decrement"}[a[0]]
		method, path = "POST", "/v1/counters/"+esc(a[1])+"/"+verb
		if len(a) == 3 {
			by, err := strconv.ParseInt(a[2], 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "BY must be a whole number, got %q\n", a[2])
				return 2
			}
			body = fmt.Sprintf(`{"by":%d}`, by)
		}
	case cmd == "counters" && len(a) == 3 && a[0] == "set":
		v, err := strconv.ParseInt(a[2], 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "VALUE must be a whole number, got %q\n", a[2])
			return 2
		}
		m := map[string]any{"value": v}
		for name, s := range map[string]string{"min": *minV, "max": *maxV} {
			if s == "" {
				continue
			}
			b, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "-%s must be a whole number, got %q\n", name, s)
				return 2
			}
			m[name] = b
		}
		enc, _ := json.Marshal(m)
		method, path, body = "PUT", "/v1/counters/"+esc(a[1]), string(enc)
	default:
		fmt.Fprint(stderr, clientUsage)
		return 2
	}
	status, out, err := c.do(method, path, body)
	if err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	if status >= 300 {
		fmt.Fprintf(stderr, "sluice: %d %s\n", status, strings.TrimSpace(string(out)))
		return 1
	}
	if status == http.StatusNoContent {
		fmt.Fprintln(stdout, "ok")
		return 0
	}
	if cmd == "keys" && a[0] == "top" {
		return printKeys(stdout, out)
	}
	_, _ = stdout.Write(out)
	return 0
}

// getenv returns the variable name of the program's environment, or def.
func (p *Program) getenv(name, def string) string {
	for _, kv := range p.environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name && v != "" {
			return v
		}
	}
	return def
}

var negativeNumber = regexp.MustCompile(`^-[0-9]+$`)

// splitArgs separates flags from positional arguments, which may come in
// any order. A negative number is an argument (counters set x -5), unless
// it is the value of a flag that takes one (-min -10); "--" ends the flags.
func splitArgs(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return flags, append(positional, args[i+1:]...)
		case negativeNumber.MatchString(a) || a == "-" || !strings.HasPrefix(a, "-"):
			positional = append(positional, a)
		default:
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := fs.Lookup(name)
			if f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					continue
				}
			}
			if f != nil && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		}
	}
	return flags, positional
}

type adminClient struct {
	base, token string
	http        *http.Client
}

func (c *adminClient) do(method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func printKeys(w io.Writer, body []byte) int {
	var v struct {
		Policy     string `json:"policy"`
		ActiveKeys int64  `json:"active_keys"`
		Keys       []struct {
			Key          string `json:"key"`
			KeyPath      string `json:"key_path"`
			Count        int64  `json:"count"`
			Limit        int64  `json:"limit"`
			Remaining    int64  `json:"remaining"`
			Rejected     int64  `json:"rejected"`
			ResetAfterMS int64  `json:"reset_after_ms"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		fmt.Fprintf(w, "%s", body)
		return 1
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCOUNT\tLIMIT\tREMAINING\tREJECTED\tRESET")
	for _, u := range v.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", printableKey(u.Key, u.KeyPath), u.Count, u.Limit, u.Remaining, u.Rejected, (time.Duration(u.ResetAfterMS) * time.Millisecond).String())
	}
	tw.Flush()
	fmt.Fprintf(w, "%d keys active in the window (an estimate)\n", v.ActiveKeys)
	return 0
}

// printableKey is a listed key as keys top prints it: as it is when that
// is printable UTF-8, else Go-quoted from its exact bytes (key_path), so no
// raw byte reaches the terminal and the printed form names the key (keys
// get and keys reset take it back, see keyArg).
func printableKey(key, keyPath string) string {
	if raw, err := url.PathUnescape(keyPath); err == nil && keyPath != "" {
		key = raw
	}
	if q := strconv.Quote(key); q[1:len(q)-1] != key || strings.HasPrefix(key, `"`) {
		return q
	}
	return key
}

// keyArg is the key a KEY argument names: a Go-quoted key (as keys top
// prints keys that are not printable) is unquoted.
func keyArg(a string) string {
	if strings.HasPrefix(a, `"`) {
		if k, err := strconv.Unquote(a); err == nil {
			return k
		}
	}
	return a
}
