package server

import (
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/api"
)

// openAPIDoc is the served form of api/openapi.yaml: converted to JSON,
// gzipped and hashed on the first request, then kept (newAsset).
var openAPIDoc = sync.OnceValues(func() (*script, error) {
	b, err := api.JSON()
	if err != nil {
		return nil, err
	}
	return newAsset(b), nil
})

// handleOpenAPI answers GET /openapi.json: the API's OpenAPI 3.1
// document, with an ETag (a 304 when unchanged) and Cache-Control like
// the browser script's.
func handleOpenAPI(ctx *fasthttp.RequestCtx) error {
	doc, err := openAPIDoc()
	if err != nil {
		return err // TestOpenAPIServed keeps this from happening
	}
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderETag, doc.etag)
	h.Add(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	h.Set(fasthttp.HeaderCacheControl, scriptMaxAge)
	h.Set("X-Content-Type-Options", "nosniff")
	writeAsset(ctx, doc, "application/json")
	return nil
}
