package server

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"

	"github.com/klauspost/compress/gzip"
	"github.com/valyala/fasthttp"
)

// scriptSource is the browser script, served at /v1/edgerec.js: anti-flicker
// landing-page variants, recommendation widgets and beacons (README "The
// browser script").
//
//go:embed assets/edgerec.js
var scriptSource []byte

// script is the served form of a static asset, made once: the browser
// script (comment lines and indentation dropped) or the OpenAPI document,
// gzip-compressed, and named by a hash of its bytes (the ETag, and the v=
// of the script's immutable URL).
type script struct {
	body, gz []byte
	version  string // 16 hex digits of SHA-256 of body
	etag     string // "version"
}

var browserScript = newScript(scriptSource)

// minifyScript drops the lines that are only a // comment, blank lines and
// each line's indentation: a third off the gzipped size, without a
// JavaScript parser. It relies on the source having no multi-line string
// or template literal (TestScriptMinified runs the result in a browser).
func minifyScript(src []byte) []byte {
	out := make([]byte, 0, len(src))
	for line := range bytes.Lines(src) {
		line = bytes.TrimLeft(line, " \t")
		if len(bytes.TrimSpace(line)) == 0 || bytes.HasPrefix(line, []byte("//")) {
			continue
		}
		out = append(out, line...)
	}
	return out
}

func newScript(src []byte) *script { return newAsset(minifyScript(src)) }

// newAsset makes the served form of body.
func newAsset(body []byte) *script {
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	if _, err := w.Write(body); err != nil {
		panic("BUG: " + err.Error())
	}
	if err := w.Close(); err != nil {
		panic("BUG: " + err.Error())
	}
	sum := sha256.Sum256(body)
	v := hex.EncodeToString(sum[:8])
	return &script{body: body, gz: gz.Bytes(), version: v, etag: `"` + v + `"`}
}

// Cache lifetimes of the script: a page that names the version
// (/v1/edgerec.js?v=…, the ETag without quotes) may keep it for a year;
// the plain URL is revalidated after ten minutes (a 304 with the ETag),
// so a new server's script reaches pages soon.
const (
	scriptMaxAge          = "public, max-age=600"
	scriptMaxAgeVersioned = "public, max-age=31536000, immutable"
)

// handleScript answers GET /v1/edgerec.js: the browser script, gzipped
// for clients that take it, 304 when the client has this version.
func (s *Server) handleScript(ctx *fasthttp.RequestCtx) error {
	sc := browserScript
	h := &ctx.Response.Header
	h.Set(fasthttp.HeaderETag, sc.etag)
	h.Add(fasthttp.HeaderVary, fasthttp.HeaderAcceptEncoding)
	h.Set("X-Content-Type-Options", "nosniff")
	if v := ctx.QueryArgs().Peek("v"); len(v) > 0 && string(v) == sc.version {
		h.Set(fasthttp.HeaderCacheControl, scriptMaxAgeVersioned)
	} else {
		h.Set(fasthttp.HeaderCacheControl, scriptMaxAge)
	}
	writeAsset(ctx, sc, "text/javascript; charset=utf-8")
	return nil
}

// writeAsset answers a: 304 when the client has this version, else its
// body, gzipped for clients that take it. The caller has set the ETag and
// Cache-Control.
func writeAsset(ctx *fasthttp.RequestCtx, a *script, contentType string) {
	if etagMatch(ctx.Request.Header.Peek(fasthttp.HeaderIfNoneMatch), a.version) {
		ctx.SetStatusCode(fasthttp.StatusNotModified)
		return
	}
	ctx.SetContentType(contentType)
	if ctx.Request.Header.HasAcceptEncoding("gzip") {
		ctx.Response.Header.Set(fasthttp.HeaderContentEncoding, "gzip")
		ctx.SetBody(a.gz)
		return
	}
	ctx.SetBody(a.body)
}

// etagMatch reports whether an If-None-Match header names the version:
// "*", or a list of entity tags, weak ones (W/"…") included, as a
// proxy that compressed or recompressed the body may have made them.
func etagMatch(header []byte, version string) bool {
	for len(header) > 0 {
		var tag []byte
		tag, header, _ = bytes.Cut(header, []byte(","))
		tag = bytes.TrimSpace(tag)
		tag = bytes.TrimPrefix(tag, []byte("W/"))
		if string(tag) == "*" || (len(tag) == len(version)+2 && tag[0] == '"' && string(tag[1:len(tag)-1]) == version) {
			return true
		}
	}
	return false
}
