package bench

import (
	"crypto/tls"
	"errors"
	"time"

	"github.com/valyala/fasthttp"
)

// fastClient sends through fasthttp's HostClient instead of bench's own
// connections (AttackOptions.Client "fasthttp"): the same attack, reports
// and CPU accounting with another client, for the comparison in README
// Benchmarks (scripts/bench-client.sh). bench keeps its own client: in
// closed loops it cost 18-24% less CPU per request and its p50 was wrk's
// within 7%, fasthttp's 1.17-1.35x; in open loops the two cost the same
// within 5%. fasthttp reads every body into memory; bench's own client
// only counts its bytes.
type fastClient struct {
	hc   *fasthttp.HostClient
	head *requestHead
}

func newFastClient(addr string, tlsConf *tls.Config, head *requestHead, o *AttackOptions) *fastClient {
	return &fastClient{head: head, hc: &fasthttp.HostClient{
		Addr: addr, IsTLS: tlsConf != nil, TLSConfig: tlsConf,
		MaxConns:           o.Connections,
		MaxConnWaitTimeout: o.Timeout, // then ErrNoFreeConns: a timeout
		// No retries: bench's own client makes none.
		MaxIdemponentCallAttempts: 1,
		NoDefaultUserAgentHeader:  true, DisableHeaderNamesNormalizing: true, DisablePathNormalizing: true,
	}}
}

// do sends t with req and resp, a worker's own, and returns the status.
func (f *fastClient) do(req *fasthttp.Request, resp *fasthttp.Response, t *Target, deadline time.Time) (int, error) {
	f.head.fill(req, t.Method, t.Path, t.Body)
	if f.hc.IsTLS {
		req.URI().SetScheme("https") // else HostClient takes it for a redirect to http
	}
	if err := f.hc.DoDeadline(req, resp, deadline); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

// fill sets req to the request h.append writes.
func (h *requestHead) fill(req *fasthttp.Request, method, path string, body []byte) {
	req.Reset()
	req.Header.DisableNormalizing()
	req.Header.SetMethod(method)
	req.Header.SetRequestURI(path)
	req.Header.SetHost(h.host)
	for _, f := range h.fields {
		req.Header.Add(f[0], f[1])
	}
	if len(body) > 0 {
		if !h.ownType {
			req.Header.SetContentType("application/x-ndjson")
		}
		if h.auth != "" && !h.ownAuth {
			req.Header.Set("Authorization", h.bearer)
		}
		req.SetBody(body)
	}
}

// classifyFast names fasthttp's own errors; false: not one of them.
func classifyFast(err error) (errKind, bool) {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrNoFreeConns), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout):
		return errTimeout, true
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return errConn, true
	}
	return errNone, false
}
