package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// TestOpenAPIMatchesTheAdminAPI sends real requests to the admin listener
// and validates each request and response against openapi.yaml, so the spec
// cannot drift from the code.
func TestOpenAPIMatchesTheAdminAPI(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.yaml is invalid: %v", err)
	}
	h := startGateway(t, scopeConfig(t))
	doc.Servers = openapi3.Servers{{URL: h.admin}} // the test's own listener
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	h.get("/keyed", "X-API-Key", "alice")
	h.get("/keyed", "X-API-Key", "alice")
	h.get("/keyed", "X-API-Key", "alice")
	h.get("/keyed", "X-API-Key", "bob")
	if err := h.g.FlushHistory(ctx); err != nil {
		t.Fatal(err)
	}
	auth := func(context.Context, *openapi3filter.AuthenticationInput) error { return nil }
	for _, tc := range []struct {
		method, path, body string
		token              bool
		want               int
		hdr                []string // more headers, name and value
	}{
		{"GET", "/healthz", "", false, 200, nil},
		{"GET", "/readyz", "", false, 200, nil},
		{"GET", "/v1/policies", "", true, 200, nil},
		{"GET", "/v1/policies", "", false, 401, nil},
		{"GET", "/v1/policies/by-key/keys?limit=10", "", true, 200, nil},
		{"GET", "/v1/policies/by-key/keys?limit=0", "", true, 400, nil},
		{"GET", "/v1/policies/nope/keys", "", true, 404, nil},
		{"GET", "/v1/policies/by-key/keys/alice", "", true, 200, nil},
		{"DELETE", "/v1/policies/by-key/keys/alice", "", true, 204, nil},
		{"PUT", "/v1/policies/by-key/overrides/alice", `{"limit":5}`, true, 200, nil},
		{"PUT", "/v1/policies/by-key/overrides/alice", `{"limit":0}`, true, 400, nil},
		{"PUT", "/v1/policies/nope/overrides/alice", `{"limit":5}`, true, 404, nil},
		{"PUT", "/v1/policies/by-key/overrides/alice", `{"limit":5}`, false, 403, []string{"Authorization", "Bearer tok-read"}},
		{"GET", "/v1/policies/by-key/overrides", "", true, 200, nil},
		{"DELETE", "/v1/policies/by-key/overrides/alice", "", true, 204, nil},
		{"DELETE", "/v1/policies/by-key/overrides/alice", "", true, 404, nil},
		{"PUT", "/v1/counters/seats", `{"value":1,"min":0,"max":2}`, true, 200, nil},
		{"GET", "/v1/counters/seats", "", true, 200, nil},
		{"GET", "/v1/counters/none", "", true, 404, nil},
		{"POST", "/v1/counters/seats/increment", `{"by":1}`, true, 200, nil},
		{"POST", "/v1/counters/seats/increment", "", true, 409, nil},
		{"POST", "/v1/counters/seats/decrement", `{"by":2}`, true, 200, nil},
		{"GET", "/v1/counters", "", true, 200, nil},
		{"GET", "/v1/policies/by-key/history", "", true, 200, nil},
		{"GET", "/v1/policies/by-key/keys/bob/history", "", true, 200, nil},
		{"GET", "/v1/counters/seats/history", "", true, 200, nil},
		{"DELETE", "/v1/counters/seats", "", true, 204, nil},
		{"PUT", "/v1/counters/jobs", `{"value":1}`, true, 200, []string{"Idempotency-Key", `"k-1"`}},
		{"PUT", "/v1/counters/jobs", `{"value":1}`, true, 200, []string{"Idempotency-Key", `"k-1"`}},
		{"PUT", "/v1/counters/jobs", `{"value":2}`, true, 422, []string{"Idempotency-Key", `"k-1"`}},
		{"POST", "/v1/counters/jobs/increment", "", true, 200, []string{"Idempotency-Key", "k-2"}},
		{"POST", "/v1/counters/jobs/decrement", "", true, 422, []string{"Idempotency-Key", "k-2"}},
		{"POST", "/v1/counters/jobs/increment", "", false, 403, []string{"Authorization", "Bearer tok-read"}},
		{"GET", "/v1/counters/jobs", "", false, 403, []string{"Authorization", "Bearer tok-keys"}},
		{"DELETE", "/v1/counters/jobs", "", true, 204, []string{"Idempotency-Key", "k-3"}},
		{"DELETE", "/v1/counters/jobs", "", true, 204, []string{"Idempotency-Key", "k-3"}},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, err := http.NewRequest(tc.method, h.admin+tc.path, body)
		if err != nil {
			t.Fatal(err)
		}
		if tc.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tc.token {
			req.Header.Set("Authorization", "Bearer secret")
		}
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			req.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s %s: not in openapi.yaml: %v", tc.method, tc.path, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: auth}}
		if tc.want < 400 {
			if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
				t.Fatalf("%s %s: request does not match the spec: %v", tc.method, tc.path, err)
			}
			if tc.body != "" {
				req.Body = io.NopCloser(strings.NewReader(tc.body))
			}
		}
		resp, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.want, b)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(b))}
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			t.Fatalf("%s %s: response %d does not match the spec: %v\n%s", tc.method, tc.path, resp.StatusCode, err, b)
		}
	}
}
