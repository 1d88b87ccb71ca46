package middleware

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// JWTAlgorithms are the signing algorithms JWTClaim accepts unless told
// otherwise: asymmetric ones only, so that a public key can never serve
// as an HMAC secret, and never "none".
var JWTAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTClaim is the KeySource of a claim of the bearer token in the
// Authorization header ("Authorization: Bearer <JWT>"), whose signature is
// verified with the key keys returns for it (a JWK Set: see
// github.com/MicahParks/keyfunc/v3, whose Keyfunc fits). The key is
// "jwt:CLAIM:VALUE". The token must be signed with one of JWTAlgorithms,
// and be within its exp and nbf when it has them; opts add parser options
// (jwt.WithIssuer, jwt.WithAudience, jwt.WithLeeway, jwt.WithValidMethods).
//
// A request with no bearer token, or with one that fails verification
// (bad signature, unknown key, expired, not yet valid, alg "none" or
// another algorithm), or whose claim is missing or is not a string or a
// number, has no key from this source: the next source is tried, then
// the rule's OnMissingKey. An invalid token is never an error of its own:
// the upstream, not the limiter, authenticates.
func JWTClaim(claim string, keys jwt.Keyfunc, opts ...jwt.ParserOption) KeySource {
	opts = append([]jwt.ParserOption{jwt.WithValidMethods(JWTAlgorithms), jwt.WithJSONNumber()}, opts...)
	parser := jwt.NewParser(opts...)
	prefix := "jwt:" + escapeKeyPart(claim, true) + ":"
	return func(r *http.Request) (string, bool) {
		auth := r.Header.Values("Authorization")
		if len(auth) != 1 {
			return "", false
		}
		scheme, tok, ok := strings.Cut(auth[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", false
		}
		claims := jwt.MapClaims{}
		t, err := parser.ParseWithClaims(strings.TrimSpace(tok), claims, keys)
		if err != nil || !t.Valid {
			return "", false
		}
		var v string
		switch c := claims[claim].(type) {
		case string:
			v = c
		case json.Number:
			v = c.String()
		default:
			return "", false
		}
		if v == "" {
			return "", false
		}
		return prefix + escapeKeyPart(v, false), true
	}
}
