// Package lint holds project-wide checks that run as tests.
package lint

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/edgerec/edgerec"

// TestImportDirection enforces the package graph of STYLE.md:
// cmd → server → engine → index → model, cmd → bench → model; api (the
// OpenAPI document) and client (the Go client) import nothing of ours,
// and bench may use client. HTTP lives in server alone: engine, index and model never see fasthttp, and only
// cmd builds a Server.
func TestImportDirection(t *testing.T) {
	allowed := map[string][]string{
		"model":       {},
		"index":       {"model"},
		"engine":      {"engine/rule", "index", "model"},
		"engine/rule": {"model"},
		"server":      {"api", "engine", "engine/rule", "index", "model"},
		"bench":       {"client", "model"},
		"api":         {},
		"client":      {},
	}
	forbiddenExternal := map[string][]string{
		"model":       {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble"},
		"index":       {"github.com/valyala/fasthttp"},
		"engine":      {"github.com/valyala/fasthttp"},
		"engine/rule": {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble"},
		"bench":       {"github.com/cockroachdb/pebble", "github.com/dgraph-io/ristretto"},
		"client":      {"github.com/valyala/fasthttp", "github.com/cockroachdb/pebble"},
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

// TestOnlyCmdImportsServer: every other door (eval, export, a test of the
// engine) goes through package engine, never through a Server.
func TestOnlyCmdImportsServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if imp == module+"/server" && fields[0] != module+"/cmd/edgerec" {
				t.Errorf("%s imports server: only cmd/edgerec may", fields[0])
			}
		}
	}
}
