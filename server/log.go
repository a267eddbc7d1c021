package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// What the server logs about a request: the client's address, the method
// and the path, never a header, the query string or the body (a key may
// be in any of them, and the log goes where the operator ships it), and
// never the text of a request parsing error: fasthttp quotes the offending
// header value in it ("invalid header value \"Bearer …\""), even with
// SecureErrorLogMessage. A client can cause these lines on every request,
// so they pass a throttle.

// logThrottle lets one line through per interval and counts the lines it
// drops; the next line it lets through says how many.
type logThrottle struct {
	every   atomic.Int64 // nanoseconds; 0 lets every line through (tests)
	last    atomic.Int64 // Unix nanoseconds of the last line let through
	dropped atomic.Uint64
}

func newLogThrottle(every time.Duration) *logThrottle {
	t := new(logThrottle)
	t.every.Store(int64(every))
	return t
}

// allow reports whether a line may be logged at now (Unix nanoseconds),
// and how many were dropped since the last one.
func (t *logThrottle) allow(now int64) (ok bool, dropped uint64) {
	if every := t.every.Load(); every > 0 {
		last := t.last.Load()
		if now-last < every || !t.last.CompareAndSwap(last, now) {
			t.dropped.Add(1)
			return false, 0
		}
	}
	return true, t.dropped.Swap(0)
}

// logClient logs, throttled, something a client caused: a refused key, a
// request that could not be parsed, a refused connection, an overload.
func (s *Server) logClient(msg string, args ...any) {
	ok, dropped := s.logs.allow(time.Now().UnixNano())
	if !ok {
		return
	}
	if dropped > 0 {
		args = append(args, "dropped_since_last", dropped)
	}
	s.e.Logger().Warn(msg, args...)
}

// logRequest is logClient with the request's address, method and path
// (cut at 200 bytes; slog quotes what it must).
func (s *Server) logRequest(ctx *fasthttp.RequestCtx, msg string, args ...any) {
	path := ctx.Path()
	if len(path) > 200 {
		path = path[:200]
	}
	s.logClient(msg, append([]any{"ip", ctx.RemoteIP().String(), "method", string(ctx.Method()), "path", string(path)}, args...)...)
}

// fasthttpLogger takes fasthttp's own log lines (connection errors,
// RequestCtx.Logger) into the throttled log. Only numbers and addresses
// are formatted as they are; an error becomes its class (errorClass), and
// any other argument (ctx.String() carries the query string) is left out.
// A connection closed under a request it was reading (by its client, or
// by the connection limit) is not worth a line.
type fasthttpLogger struct{ s *Server }

func (l fasthttpLogger) Printf(format string, args ...any) {
	safe := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case int, int32, int64, uint32, uint64, float64, net.Addr:
			safe[i] = v
		case error:
			class := errorClass(v)
			if class == classClosed {
				return
			}
			safe[i] = class
		default:
			safe[i] = "(left out)"
		}
	}
	l.s.logClient("fasthttp: " + fmt.Sprintf(format, safe...))
}

// The classes of errorClass.
const (
	classClosed       = "connection closed"
	classHeadTooLarge = "request line and headers too large"
	classBodyTooLarge = "body too large"
	classTimeout      = "timeout"
	classMalformed    = "malformed request"
)

// errorClass names the kind of a request reading error without its text.
func errorClass(err error) string {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.As(err, &small):
		return classHeadTooLarge
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return classBodyTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		return classTimeout
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return classClosed
	default:
		return classMalformed
	}
}
