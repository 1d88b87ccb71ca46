package upstream

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestDialTimeout dials a listener whose accept queue is full, so that the
// kernel drops the SYNs and only the dial timeout ends the wait.
func TestDialTimeout(t *testing.T) {
	t.Parallel()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ { // fill the accept queue
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
		if i > 16 {
			t.Skip("the kernel accepts connections past the backlog")
		}
	}
	tr := &Transport{DialTimeout: 100 * time.Millisecond}
	_, err = tr.RoundTrip(newReq(t, "GET", "http://"+addr+"/", nil))
	if !isTimeout(err) {
		t.Fatalf("got %v, want a dial timeout", err)
	}
}
