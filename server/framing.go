package server

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// badFraming reports whether a request carries both Content-Length and
// Transfer-Encoding. fasthttp takes Transfer-Encoding and forgets
// Content-Length; a proxy in front that took Content-Length would see
// another request end, and the rest of the body would reach us as a next
// request of its own choosing (request smuggling). RFC 9112, 6.3, lets a
// server refuse such a request and requires it to close the connection
// after answering, which Handle does. Requests without a body (neither
// header: ContentLength -2) cost one call.
func badFraming(h *fasthttp.RequestHeader) bool {
	if h.ContentLength() == -2 {
		return false
	}
	var cl, te bool
	for raw := h.RawHeaders(); len(raw) > 0; {
		line, rest, _ := bytes.Cut(raw, []byte("\n"))
		raw = rest
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		cl = cl || bytes.EqualFold(name, []byte("Content-Length"))
		te = te || bytes.EqualFold(name, []byte("Transfer-Encoding"))
	}
	return cl && te
}
