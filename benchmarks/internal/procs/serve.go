package procs

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Upstream starts the upstream every load program proxies to: it reads the
// request body and answers 24 bytes of text. It returns its address.
func Upstream() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	body := []byte("hello from the upstream\n")
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String()
}

// Nginx starts nginx under dir as a keep-alive proxy_pass to upstream, one
// worker per CPU. It returns its URL, the master's pid and a stop that ends
// the master and its workers: they run in a process group of their own,
// since killing the master alone leaves its workers running.
func Nginx(dir, upstream string) (url string, pid int, stop func()) {
	addr := FreeAddr()
	ndir := filepath.Join(dir, "nginx")
	_ = os.MkdirAll(filepath.Join(ndir, "logs"), 0o755)
	conf := fmt.Sprintf(`worker_processes %d;
pid %s/nginx.pid;
error_log %s/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream app { server %s; keepalive 64; }
  server {
    listen %s;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`, runtime.NumCPU(), ndir, ndir, upstream, addr)
	path := filepath.Join(ndir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("nginx", "-p", ndir, "-c", path, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	WaitUp(addr)
	pid = cmd.Process.Pid
	return "http://" + addr + "/", pid, func() {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = cmd.Wait()
	}
}

// CPUTime is the user plus system CPU time of the processes so far (zero
// for a pid that is not positive or has no /proc entry). /proc counts in
// clock ticks of 1/100 s.
func CPUTime(pids ...int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		if pid <= 0 {
			continue
		}
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
		s, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
		ticks += u + s
	}
	return time.Duration(ticks) * time.Second / 100
}

// Children returns pid and the processes whose parent it is.
func Children(pid int) []int {
	pids := []int{pid}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(n); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, n)
		}
	}
	return pids
}

// statFields returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces): field 3 onwards.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil
	}
	return strings.Fields(string(b[i+2:]))
}
