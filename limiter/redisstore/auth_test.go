package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/limiter"
	"github.com/sluice-gateway/sluice/limiter/limitertest"
	"github.com/sluice-gateway/sluice/limiter/redisstore"
)

// startRedis runs a redis-server of the test's own with extra arguments
// and returns its port.
func startRedis(t *testing.T, args ...string) int {
	t.Helper()
	bin := redisServer(t)
	port := freePort(t)
	base := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}
	portArgs := []string{"--port", fmt.Sprint(port)}
	for _, a := range args {
		if a == "--tls-port" {
			portArgs = []string{"--port", "0"}
		}
	}
	full := append(append(base, portArgs...), args...)
	for i, a := range full {
		if a == "PORT" {
			full[i] = fmt.Sprint(port)
		}
	}
	cmd := exec.Command(bin, full...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitPort(t, port)
	return port
}

func checkStore(t *testing.T, o redisstore.Options) error {
	t.Helper()
	s, err := redisstore.New(nil, o)
	if err != nil {
		return err
	}
	defer s.Close()
	p := limitertest.Policy(t, "auth", limiter.SlidingLog, 2, time.Minute)
	for i := range 3 {
		d, err := s.Allow(context.Background(), p, "k", 1)
		if err != nil {
			return err
		}
		if d.Allowed != (i < 2) {
			t.Fatalf("request %d: allowed %v", i+1, d.Allowed)
		}
	}
	return nil
}

func TestRedisPassword(t *testing.T) {
	t.Parallel()
	port := startRedis(t, "--requirepass", "s3cret-pw")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Password: "s3cret-pw", Timeout: time.Second}); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Password: "wrong", Timeout: time.Second}); err == nil {
		t.Fatal("a wrong password worked")
	}
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Timeout: time.Second}); err == nil {
		t.Fatal("no password worked")
	}
}

func TestRedisACLUser(t *testing.T) {
	t.Parallel()
	port := startRedis(t, "--user", "default", "off", "--user", "sluice", "on", ">acl-pw", "~*", "&*", "+@all")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Username: "sluice", Password: "acl-pw", Timeout: time.Second}); err != nil {
		t.Fatalf("as the ACL user: %v", err)
	}
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Username: "sluice", Password: "nope", Timeout: time.Second}); err == nil {
		t.Fatal("a wrong ACL password worked")
	}
}

func TestRedisTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, cert, key := writeTestPKI(t, dir)
	port := startRedis(t, "--tls-port", "PORT", "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, TLS: true, TLSCAFile: ca, Timeout: time.Second}); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, TLS: true, Timeout: time.Second}); err == nil {
		t.Fatal("TLS without the CA trusted a self-signed server")
	}
	if err := checkStore(t, redisstore.Options{Addrs: []string{addr}, Timeout: 300 * time.Millisecond, BreakerThreshold: -1}); err == nil {
		t.Fatal("plain text talked to a TLS port")
	}
	if _, err := redisstore.New(nil, redisstore.Options{Addrs: []string{addr}, TLSCAFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Fatal("a missing CA file: no error")
	}
}

// writeTestPKI writes a CA and a server certificate for 127.0.0.1.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}
