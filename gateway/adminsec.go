package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// loopbackAddr reports whether a listen address accepts loopback
// connections only: "localhost" or a loopback IP. An empty host (":9090")
// listens on every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowedHost reports whether a request's Host header may reach the admin
// listener: an IP address (a DNS-rebinding page reaches the listener only
// through a name it controls), localhost, or one of the allowed names.
func allowedHost(hostHeader string, allowed []string) bool {
	if hostHeader == "" {
		return true // HTTP/1.0 without Host: not a browser
	}
	host := hostHeader
	if h, _, err := net.SplitHostPort(hostHeader); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	for _, a := range allowed {
		if strings.EqualFold(host, strings.TrimSuffix(a, ".")) {
			return true
		}
	}
	return false
}

// checkHost answers 421 to requests whose Host header names a host the
// admin listener does not serve (DNS rebinding); admin.allowed_hosts adds
// names.
func (g *Gateway) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowedHost(r.Host, g.state.Load().cfg.Admin.AllowedHosts) {
			writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("host %q is not served by the admin listener; add it to admin.allowed_hosts", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TokenFile is where a gateway whose admin listener is on port writes its
// generated admin token: under dir, else $XDG_RUNTIME_DIR/sluice, else
// the temporary directory's sluice-UID. The `sluice keys` and `sluice
// counters` commands read it when given no token.
func TokenFile(dir, adminAddr string) string {
	_, port, _ := net.SplitHostPort(adminAddr)
	return filepath.Join(tokenDir(dir), "admin-token-"+port)
}

func tokenDir(dir string) string {
	if dir != "" {
		return dir
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "sluice")
	}
	return filepath.Join(os.TempDir(), "sluice-"+strconv.Itoa(os.Geteuid()))
}

// newToken returns a random admin token.
func newToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// writeTokenFile writes token to path, readable by its owner only. The
// directory is created with mode 0700; one that another user owns or can
// read is refused, since a shared temporary directory is open to anyone.
func writeTokenFile(path, token string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to another user (uid %d)", dir, st.Uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is open to other users (mode %v); want 0700", dir, fi.Mode().Perm())
	}
	f, err := os.CreateTemp(dir, ".admin-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
