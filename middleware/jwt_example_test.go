package middleware_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/middleware"
)

// Two requests an hour per user, the user being the sub claim of a
// verified bearer token. In production the keys come from the identity
// provider's JWK Set: k, err := keyfunc.NewDefaultCtx(ctx, []string{jwksURL})
// (github.com/MicahParks/keyfunc/v3), then pass k.Keyfunc.
func ExampleJWTClaim() {
	signer, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keys := func(*jwt.Token) (any, error) { return &signer.PublicKey, nil }
	perUser := middleware.PerKey(middleware.JWTClaim("sub", keys), 2, time.Hour)
	defer perUser.Close()
	srv := perUser.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") }))

	alice, _ := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(signer)
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "bob"}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, tok := range []string{alice, alice, alice, forged} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		fmt.Println(rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
	}
	// The forged token has no key: PerKey falls back to the client IP.

	src := middleware.JWTClaim("sub", keys)
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+alice)
	fmt.Println(src(r))
	// Output:
	// 200 1
	// 200 0
	// 429 0
	// 200 1
	// jwt:sub:alice true
}
