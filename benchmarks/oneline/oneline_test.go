package oneline

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLinesOfCode counts the lines of each constructor's body in
// oneline.go, and the imports each needs, and holds them to the figures
// quoted in the README (Use it as a library).
func TestLinesOfCode(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "oneline.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"sluicePerIP": 1, "httprateByIP": 1, "sluicePerHeader": 1, "httpratePerHeader": 3, "sluiceBefore": 8}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		lines := fset.Position(fn.Body.Rbrace).Line - fset.Position(fn.Body.Lbrace).Line - 1
		imports := map[string]bool{}
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Obj == nil && id.Name != "http" {
					imports[id.Name] = true
				}
			}
			return true
		})
		t.Logf("%-18s %d lines, %d packages beyond net/http and time", fn.Name.Name, lines, len(imports))
		if w, ok := want[fn.Name.Name]; ok && lines != w {
			t.Errorf("%s: %d lines, want %d", fn.Name.Name, lines, w)
		}
	}
}

var ok = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

// discard keeps only the header map, so that the benchmark measures the
// middleware and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkPerRequest: one request through each middleware, admitted (a
// limit never reached) and rejected (a limit of 1, reached by the first
// request), from one client with the header set.
func BenchmarkPerRequest(b *testing.B) {
	for _, tc := range []struct {
		name string
		wrap func(http.Handler, int) http.Handler
	}{
		{"bare", func(h http.Handler, _ int) http.Handler { return h }},
		{"sluice-PerIP", sluicePerIP},
		{"httprate-LimitByIP", httprateByIP},
		{"sluice-PerHeader", sluicePerHeader},
		{"httprate-LimitBy-header", httpratePerHeader},
	} {
		for _, c := range []struct {
			name  string
			limit int
			want  int
		}{{"admitted", 1 << 30, http.StatusOK}, {"rejected", 1, http.StatusTooManyRequests}} {
			b.Run(tc.name+"/"+c.name, func(b *testing.B) {
				h := tc.wrap(ok, c.limit)
				req := httptest.NewRequest("GET", "/", nil)
				req.RemoteAddr = "192.0.2.1:1234"
				req.Header.Set("X-API-Key", "k-123")
				w := &discard{h: make(http.Header, 8)}
				h.ServeHTTP(w, req) // the first request: admitted in both cases
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if tc.name != "bare" && rec.Code != c.want {
					b.Fatalf("second request: %d, want %d", rec.Code, c.want)
				}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					h.ServeHTTP(w, req)
				}
			})
		}
	}
}
