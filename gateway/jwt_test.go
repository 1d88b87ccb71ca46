package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/gateway"
)

// testKeys are an RS256 and an ES256 signing key, generated per test run,
// and their JWK Set.
type testKeys struct {
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
	jwks []byte
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newTestKeys(t *testing.T) *testKeys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ek.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	xy := pub.Bytes()[1:] // uncompressed point: 0x04, X, Y
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "es", "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(xy[:32]), "y": b64(xy[32:])},
	}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return &testKeys{rsa: rk, ec: ek, jwks: b}
}

func sign(t *testing.T, method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jwtConfig(jwt string) string {
	return fmt.Sprintf(`
listen: "127.0.0.1:0"
admin: { listen: "127.0.0.1:0", token: "secret" }
log: { access: false }
jwt: %s
policies:
  per-user:
    key: ["jwt:sub"]
    on_missing_key: reject
    algorithm: fixed_window
    limit: 2
    window: 1h
  per-user-or-ip:
    key: ["jwt:sub"]
    on_missing_key: ip
    algorithm: fixed_window
    limit: 100
    window: 1h
routes:
  - name: strict
    match: { path_prefix: /strict }
    respond: { status: 201, body: "ok\n" }
    policies: [per-user]
  - name: lenient
    match: { path_prefix: /lenient }
    respond: { status: 201, body: "ok\n" }
    policies: [per-user-or-ip]
`, jwt)
}

// TestJWTClaimKeys: requests are keyed by the sub claim of bearer tokens
// verified against a JWK Set served on loopback (RS256 and ES256); an
// expired token, a wrong signature, alg none, an HMAC token signed with
// the public key, a token from an unknown key and no token at all have no
// key: 400 where on_missing_key is reject, the client IP where it is ip.
func TestJWTClaimKeys(t *testing.T) {
	t.Parallel()
	keys := newTestKeys(t)
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(keys.jwks)
	}))
	t.Cleanup(srv.Close)
	h := startGateway(t, jwtConfig(fmt.Sprintf(`{ jwks_url: %q, issuer: "https://issuer.test" }`, srv.URL)))

	now := time.Now()
	claims := func(sub string, exp time.Time) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "iss": "https://issuer.test", "exp": exp.Unix(), "iat": now.Unix()}
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	alice := sign(t, jwt.SigningMethodRS256, "rs", keys.rsa, claims("alice", now.Add(time.Hour)))
	bob := sign(t, jwt.SigningMethodES256, "es", keys.ec, claims("bob", now.Add(time.Hour)))
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims("mallory", now.Add(time.Hour))).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hmacWithPublic := sign(t, jwt.SigningMethodHS256, "rs", []byte(keys.jwks), claims("mallory", now.Add(time.Hour)))
	bad := map[string]string{
		"expired":         sign(t, jwt.SigningMethodRS256, "rs", keys.rsa, claims("alice", now.Add(-time.Minute))),
		"wrong signature": sign(t, jwt.SigningMethodRS256, "rs", other, claims("alice", now.Add(time.Hour))),
		"unknown kid":     sign(t, jwt.SigningMethodRS256, "nope", other, claims("alice", now.Add(time.Hour))),
		"alg none":        none,
		"hmac":            hmacWithPublic,
		"wrong issuer":    sign(t, jwt.SigningMethodRS256, "rs", keys.rsa, jwt.MapClaims{"sub": "alice", "iss": "https://evil.test", "exp": now.Add(time.Hour).Unix()}),
		"no sub":          sign(t, jwt.SigningMethodRS256, "rs", keys.rsa, jwt.MapClaims{"iss": "https://issuer.test", "exp": now.Add(time.Hour).Unix()}),
		"tampered":        alice[:strings.LastIndexByte(alice, '.')] + "." + b64([]byte("not a signature")),
		"not a jwt":       "abc",
	}
	for name, tok := range bad {
		resp, body := h.get("/strict", "Authorization", "Bearer "+tok)
		if resp.StatusCode != 400 {
			t.Errorf("%s token on a reject policy: %d %s, want 400", name, resp.StatusCode, body)
		}
	}
	if resp, _ := h.get("/strict"); resp.StatusCode != 400 {
		t.Errorf("no token on a reject policy: %d, want 400", resp.StatusCode)
	}
	if resp, _ := h.get("/strict", "Authorization", "Basic YWxpY2U6eA=="); resp.StatusCode != 400 {
		t.Errorf("basic auth on a reject policy: %d, want 400", resp.StatusCode)
	}
	for _, tc := range []struct {
		tok  string
		want []int
	}{{alice, []int{201, 201, 429}}, {bob, []int{201, 201, 429}}} {
		for i, want := range tc.want {
			if resp, body := h.get("/strict", "Authorization", "Bearer "+tc.tok); resp.StatusCode != want {
				t.Fatalf("request %d: %d %s, want %d", i, resp.StatusCode, body, want)
			}
		}
	}
	_, body := h.adminDo("GET", "/v1/policies/per-user/keys", "")
	for _, k := range []string{`"key":"jwt:sub:alice"`, `"key":"jwt:sub:bob"`} {
		if !strings.Contains(body, k) {
			t.Errorf("listing lacks %s: %s", k, body)
		}
	}
	if strings.Contains(body, "mallory") {
		t.Errorf("an unverified token's claim was counted: %s", body)
	}

	// on_missing_key: ip: every bad token counts against the client IP.
	for _, tok := range bad {
		if resp, body := h.get("/lenient", "Authorization", "Bearer "+tok); resp.StatusCode != 201 {
			t.Fatalf("lenient: %d %s, want 201", resp.StatusCode, body)
		}
	}
	h.get("/lenient", "Authorization", "Bearer "+alice)
	resp, body := h.adminDo("GET", "/v1/policies/per-user-or-ip/keys/127.0.0.1", "")
	wantStatus(t, resp, body, 200)
	if c := decode[map[string]any](t, body)["count"]; c != float64(len(bad)) {
		t.Fatalf("client IP counted %v, want %d (one per bad token): %s", c, len(bad), body)
	}
	resp, body = h.adminDo("GET", "/v1/policies/per-user-or-ip/keys/jwt:sub:alice", "")
	wantStatus(t, resp, body, 200)
	if c := decode[map[string]any](t, body)["count"]; c != float64(1) {
		t.Fatalf("alice counted %v on the lenient policy, want 1: %s", c, body)
	}
	if n := fetches.Load(); n < 1 || n > 2 {
		t.Fatalf("the JWK Set was fetched %d times, want once (plus at most one for the unknown kid)", n)
	}
}

// TestJWTFromFile: jwks_file works like jwks_url, and validate names the
// field and line of every bad jwt setting.
func TestJWTFromFile(t *testing.T) {
	t.Parallel()
	keys := newTestKeys(t)
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, keys.jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	h := startGateway(t, jwtConfig(fmt.Sprintf(`{ jwks_file: %q }`, file)))
	tok := sign(t, jwt.SigningMethodES256, "es", keys.ec, jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(time.Hour).Unix()})
	for i, want := range []int{201, 201, 429} {
		if resp, body := h.get("/strict", "Authorization", "Bearer "+tok); resp.StatusCode != want {
			t.Fatalf("request %d: %d %s, want %d", i, resp.StatusCode, body, want)
		}
	}

	for _, tc := range []struct{ jwt, want string }{
		{`{}`, `:8: policies.per-user.key[0]: "jwt:sub": a jwt part needs`},
		{`{ jwks_url: "ftp://x" }`, `:5: jwt.jwks_url: must be an http or https URL`},
		{fmt.Sprintf(`{ jwks_url: "https://x", jwks_file: %q }`, file), `:5: jwt.jwks_file: give jwt.jwks_url or jwt.jwks_file, not both`},
		{`{ jwks_file: "/nonexistent/jwks.json" }`, `:5: jwt.jwks_file: open /nonexistent/jwks.json`},
		{fmt.Sprintf(`{ jwks_file: %q, algorithms: [HS256] }`, file), `:5: jwt.algorithms[0]: must be one of`},
		{fmt.Sprintf(`{ jwks_file: %q, refresh: 10ms }`, file), `:5: jwt.refresh: must be at least 1s`},
	} {
		path := writeConfig(t, jwtConfig(tc.jwt))
		_, err := gateway.Load(path, []string{}, nil)
		if err == nil || !strings.Contains(err.Error(), path+tc.want) {
			t.Errorf("jwt %s: got %v, want %q", tc.jwt, err, tc.want)
		}
	}
}
