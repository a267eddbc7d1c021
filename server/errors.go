package server

import (
	"errors"
	"log"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// httpError is an error with the status and code a client sees.
type httpError struct {
	status  int
	code    string
	message string
}

func (e *httpError) Error() string { return e.message }

func errorf(status int, code, message string) error {
	return &httpError{status: status, code: code, message: message}
}

// Errors handlers return; the message names what to fix.
var (
	errNotFoundRoute = errorf(fasthttp.StatusNotFound, "not_found", "no such endpoint")
	errMethod        = errorf(fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this endpoint")
	errNoSnapshot    = errorf(fasthttp.StatusServiceUnavailable, "no_snapshot", "no index snapshot is loaded yet")
	errUnauthorized  = errorf(fasthttp.StatusUnauthorized, "unauthorized", "missing or wrong API key: send Authorization: Bearer <key>")
)

// writeError is the one place that maps errors to statuses and logs.
// Unknown errors are internal: 500, logged at most once a second.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		s.logThrottled("internal error on %s %q: %v", ctx.Method(), ctx.Path(), err)
		he = &httpError{status: fasthttp.StatusInternalServerError, code: "internal", message: "internal error"}
	}
	ctx.SetStatusCode(he.status)
	ctx.SetContentType("application/json")
	b := make([]byte, 0, 64+len(he.message))
	b = append(b, `{"error":{"code":`...)
	b = appendJSONString(b, he.code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, he.message)
	b = append(b, "}}\n"...)
	ctx.SetBody(b)
	s.m.errors.Inc()
}

var lastLog atomic.Int64

func (s *Server) logThrottled(format string, args ...any) {
	now := time.Now().Unix()
	if last := lastLog.Load(); last != now && lastLog.CompareAndSwap(last, now) {
		log.Printf(format, args...)
	}
}
