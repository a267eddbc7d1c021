// Package api holds edgerec's HTTP API contract: the OpenAPI 3.1 document
// openapi.yaml, embedded in the binary and served as JSON at
// GET /openapi.json. server's TestOpenAPIContract sends real requests to
// every route of the router and validates requests and answers against
// it; package client is the typed Go client of the same API.
package api

import (
	_ "embed"
	"fmt"

	"github.com/goccy/go-yaml"
)

// YAML is the OpenAPI document as written. The caller must not modify it.
//
//go:embed openapi.yaml
var YAML []byte

// JSON returns the document converted to JSON (the form /openapi.json
// serves), or an error naming the line of a YAML mistake.
func JSON() ([]byte, error) {
	b, err := yaml.YAMLToJSON(YAML)
	if err != nil {
		return nil, fmt.Errorf("cannot convert api/openapi.yaml to JSON: %w", err)
	}
	return b, nil
}
