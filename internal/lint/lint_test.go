// Package lint holds project-wide checks that run as tests.
package lint

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/edgerec/edgerec"

// TestImportDirection enforces the package graph of STYLE.md:
// cmd → server → index → model, cmd → bench → model.
func TestImportDirection(t *testing.T) {
	allowed := map[string][]string{
		"model":  {},
		"index":  {"model"},
		"server": {"index", "model"},
		"bench":  {"model"},
	}
	forbiddenExternal := map[string][]string{
		"model": {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble"},
		"index": {"github.com/valyala/fasthttp"},
		"bench": {"github.com/cockroachdb/pebble", "github.com/dgraph-io/ristretto"},
	}
	for pkg, ok := range allowed {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if own, found := strings.CutPrefix(dep, module+"/"); found && own != pkg {
				good := false
				for _, a := range ok {
					if own == a || strings.HasPrefix(own, "internal/") {
						good = true
					}
				}
				if !good {
					t.Errorf("%s imports %s: allowed are %v", pkg, own, ok)
				}
			}
			for _, bad := range forbiddenExternal[pkg] {
				if strings.HasPrefix(dep, bad) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
