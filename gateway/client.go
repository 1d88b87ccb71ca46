package gateway

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const clientUsage = `usage:
  sluice keys top POLICY [-n N]         the busiest keys of a policy
  sluice keys get POLICY KEY            one key's usage
  sluice keys reset POLICY KEY          reset a key
  sluice counters list
  sluice counters get NAME
  sluice counters incr|decr NAME [BY]
  sluice counters set NAME VALUE [-min N] [-max N]
  sluice counters delete NAME
flags: -admin ADDR (default $SLUICE_ADMIN__LISTEN or 127.0.0.1:9090),
  -token TOKEN (default $SLUICE_ADMIN__TOKEN)
`

// runClient is the admin client: `sluice keys ...` and `sluice counters ...`.
func runClient(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sluice "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clientUsage) }
	addr := fs.String("admin", envOr("SLUICE_ADMIN__LISTEN", "127.0.0.1:9090"), "admin listener address")
	token := fs.String("token", os.Getenv("SLUICE_ADMIN__TOKEN"), "admin token")
	n := fs.Int("n", 20, "how many keys (keys top)")
	minV := fs.String("min", "", "lower bound (counters set)")
	maxV := fs.String("max", "", "upper bound (counters set)")
	// Flags may come before, between or after the arguments.
	var a []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		a, rest = append(a, rest[0]), rest[1:]
	}
	c := &adminClient{base: "http://" + strings.TrimPrefix(*addr, "http://"), token: *token, http: &http.Client{Timeout: 10 * time.Second}}
	esc := url.PathEscape
	var method, path, body string
	switch {
	case cmd == "keys" && len(a) == 2 && a[0] == "top":
		method, path = "GET", "/v1/policies/"+esc(a[1])+"/keys?limit="+strconv.Itoa(*n)
	case cmd == "keys" && len(a) == 3 && a[0] == "get":
		method, path = "GET", "/v1/policies/"+esc(a[1])+"/keys/"+esc(a[2])
	case cmd == "keys" && len(a) == 3 && a[0] == "reset":
		method, path = "DELETE", "/v1/policies/"+esc(a[1])+"/keys/"+esc(a[2])
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

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
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
		Policy string      `json:"policy"`
		Keys   []usageView `json:"keys"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		fmt.Fprintf(w, "%s", body)
		return 1
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCOUNT\tLIMIT\tREMAINING\tREJECTED\tRESET")
	for _, u := range v.Keys {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", u.Key, u.Count, u.Limit, u.Remaining, u.Rejected, (time.Duration(u.ResetAfterMS) * time.Millisecond).String())
	}
	tw.Flush()
	return 0
}
