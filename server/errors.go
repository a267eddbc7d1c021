package server

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/jsonw"
)

// httpError is an error of the HTTP layer itself (routes, methods, keys,
// request syntax), with the status and code a client sees.
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
	errUnauthorized  = errorf(fasthttp.StatusUnauthorized, "unauthorized", "missing or wrong API key: send Authorization: Bearer <key>")
	errOverloaded    = errorf(fasthttp.StatusServiceUnavailable, "overloaded", "too many requests in flight; retry after a second")
	errBadFraming    = errorf(fasthttp.StatusBadRequest, "bad_request", "both Content-Length and Transfer-Encoding: refused (request smuggling)")
)

func badParam(name, why string) error {
	return errorf(fasthttp.StatusBadRequest, "bad_parameter", name+": "+why)
}

// stateRetryAfter is the Retry-After, in seconds, of a write the state
// store refused: its longest wait between two tries to reopen.
const stateRetryAfter = "5"

// kindStatus maps the engine's error kinds to statuses.
var kindStatus = [...]int{
	engine.Invalid:      fasthttp.StatusBadRequest,
	engine.NotFound:     fasthttp.StatusNotFound,
	engine.Unavailable:  fasthttp.StatusServiceUnavailable,
	engine.Conflict:     fasthttp.StatusConflict,
	engine.TooLarge:     fasthttp.StatusRequestEntityTooLarge,
	engine.Unauthorized: fasthttp.StatusUnauthorized,
}

// writeError is the one place that maps errors to statuses and logs.
// Unknown errors are internal: 500, logged at most once a second.
func (s *Server) writeError(ctx *fasthttp.RequestCtx, err error) {
	var he *httpError
	var ee *engine.Error
	switch {
	case errors.As(err, &he):
	case errors.As(err, &ee) && int(ee.Kind) < len(kindStatus) && kindStatus[ee.Kind] != 0:
		he = &httpError{status: kindStatus[ee.Kind], code: ee.Code, message: ee.Message}
	case errors.Is(err, index.ErrNoSpace):
		// The state store's disk is full: the store reopens by itself
		// once it has room (index, "Recovery from failed writes").
		he = &httpError{status: fasthttp.StatusInsufficientStorage, code: "insufficient_storage", message: "the state store's disk is full; retry later"}
		ctx.Response.Header.Set("Retry-After", stateRetryAfter)
	case errors.Is(err, index.ErrNotWritable):
		// Not the request's fault, and /readyz says so too: the client
		// retries later or elsewhere.
		he = &httpError{status: fasthttp.StatusServiceUnavailable, code: "state_not_writable", message: "the state store takes no writes; retry later"}
		ctx.Response.Header.Set("Retry-After", stateRetryAfter)
	default:
		s.e.LogThrottled("internal error", "method", string(ctx.Method()), "path", string(ctx.Path()), "err", err)
		he = &httpError{status: fasthttp.StatusInternalServerError, code: "internal", message: "internal error"}
	}
	if he.status == fasthttp.StatusUnauthorized {
		s.m.authFailures.Inc()
		s.logRequest(ctx, "refused: missing or wrong key")
	}
	ctx.SetStatusCode(he.status)
	ctx.SetContentType("application/json")
	b := make([]byte, 0, 64+len(he.message))
	b = append(b, `{"error":{"code":`...)
	b = jsonw.AppendString(b, he.code)
	b = append(b, `,"message":`...)
	b = jsonw.AppendString(b, he.message)
	b = append(b, "}}\n"...)
	ctx.SetBody(b)
	s.m.errors.Inc()
}

// readError answers a request fasthttp could not read (its
// ErrorHandler): 431 when the request line and headers are over
// MaxHeaderBytes, 413 for a body over MaxBodySize, 408 when the request
// did not arrive within ReadTimeout, else 400. The message is fixed:
// fasthttp's error quotes the request, Authorization header included.
// fasthttp closes the connection after the answer.
func (s *Server) readError(ctx *fasthttp.RequestCtx, err error) {
	class := errorClass(err)
	var he error
	switch class {
	case classClosed:
		return // nobody to answer
	case classHeadTooLarge:
		he = errorf(fasthttp.StatusRequestHeaderFieldsTooLarge, "too_large", "request line and headers over "+strconv.Itoa(s.o.MaxHeaderBytes)+" bytes")
	case classBodyTooLarge:
		he = errorf(fasthttp.StatusRequestEntityTooLarge, "too_large", "request body over "+strconv.Itoa(s.o.MaxBodySize)+" bytes")
	case classTimeout:
		he = errorf(fasthttp.StatusRequestTimeout, "timeout", "request not received in time")
	default:
		he = errorf(fasthttp.StatusBadRequest, "bad_request", "cannot parse the request")
	}
	s.logClient("cannot read request", "ip", ctx.RemoteIP().String(), "error", class)
	s.writeError(ctx, he)
}
