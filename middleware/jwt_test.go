package middleware_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/middleware"
)

// TestJWTClaim: the claim of a verified token is the key, escaped like
// every source's; numbers keep every digit; anything unverified, or a
// claim that is not a string or a number, is no key.
func TestJWTClaim(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(*jwt.Token) (any, error) { return &key.PublicKey, nil }
	sign := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodES256, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name, claim string
		auth        []string
		want        string
		ok          bool
	}{
		{"sub", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": "alice", "exp": exp})}, "jwt:sub:alice", true},
		{"lower-case scheme", "sub", []string{"bearer " + sign(jwt.MapClaims{"sub": "alice"})}, "jwt:sub:alice", true},
		{"escaped", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": "a|b%c"})}, "jwt:sub:a%7Cb%25c", true},
		{"big number", "uid", []string{"Bearer " + sign(jwt.MapClaims{"uid": 12345678901234567})}, "jwt:uid:12345678901234567", true},
		{"claim name escaped", "a:b", []string{"Bearer " + sign(jwt.MapClaims{"a:b": "x"})}, "jwt:a%3Ab:x", true},
		{"object claim", "org", []string{"Bearer " + sign(jwt.MapClaims{"org": map[string]any{"id": 1}})}, "", false},
		{"empty claim", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": ""})}, "", false},
		{"missing claim", "tenant", []string{"Bearer " + sign(jwt.MapClaims{"sub": "alice"})}, "", false},
		{"expired", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-time.Second).Unix()})}, "", false},
		{"not yet valid", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": "alice", "nbf": exp})}, "", false},
		{"two headers", "sub", []string{"Bearer " + sign(jwt.MapClaims{"sub": "alice"}), "Bearer " + sign(jwt.MapClaims{"sub": "bob"})}, "", false},
		{"basic", "sub", []string{"Basic YWxpY2U6eA=="}, "", false},
		{"no token", "sub", nil, "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		for _, a := range tc.auth {
			r.Header.Add("Authorization", a)
		}
		got, ok := middleware.JWTClaim(tc.claim, keys)(r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
