package server

import (
	"bytes"
	"context"
	"net/url"
	"strconv"
	"sync"

	"github.com/valyala/fasthttp"

	"github.com/edgerec/edgerec/engine"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Page sizes of /v1/segments/{id}/members.
const (
	defaultMembersPage = 1000
	maxMembersPage     = 10000
	// maxMembersBytes bounds one page's body (in memory before it is sent).
	maxMembersBytes = 16 << 20
)

// handleMembers answers GET and POST /v1/segments/{id}/members (API key:
// personal data): a page of engine.ExportAudience. X-Next-After names
// (query-escaped) the last user of a full page; pass it as after= for the
// next one. A GET only reads; a POST, an export job, also records the
// membership changes it notices, so that a later since= lists them.
func (s *Server) handleMembers(ctx *fasthttp.RequestCtx, id []byte) error {
	if err := authorize(ctx, s.o.APIKey); err != nil {
		return err
	}
	args := ctx.QueryArgs()
	o := engine.AudienceOptions{Record: ctx.IsPost(),
		Segment: string(id), Format: string(args.Peek("format")), Channel: string(args.Peek("channel")),
		After: string(args.Peek("after")), Limit: defaultMembersPage, MaxBytes: maxMembersBytes,
	}
	if v := args.Peek("with_recs"); len(v) > 0 {
		n, err := fasthttp.ParseUint(v)
		if err != nil || n > engine.MaxAudienceRecs {
			return badParam("with_recs", "must be an integer from 0 to "+strconv.Itoa(engine.MaxAudienceRecs))
		}
		o.WithRecs = n
	}
	if v := args.Peek("since"); len(v) > 0 {
		n, err := fasthttp.ParseUint(v)
		if err != nil || n == 0 {
			return badParam("since", "must be a Unix time in seconds, after 1970-01-01")
		}
		o.Since = int64(n)
	}
	if v := args.Peek("raw_csv"); len(v) > 0 {
		o.RawCSV = string(v) == "1" || string(v) == "true"
	}
	// CSV pages share their columns only when attrs= names them: without
	// it each page has the attribute columns of its own rows.
	if v := args.Peek("attrs"); len(v) > 0 {
		splitComma(v, func(a []byte) { o.Attrs = append(o.Attrs, string(a)) })
	}
	if v := args.Peek("limit"); len(v) > 0 {
		n, err := fasthttp.ParseUint(v)
		if err != nil || n < 1 || n > maxMembersPage {
			return badParam("limit", "must be an integer from 1 to "+strconv.Itoa(maxMembersPage))
		}
		o.Limit = n
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := bytes.NewBuffer((*bp)[:0])
	st, err := s.e.ExportAudience(context.Background(), buf, o)
	if err != nil {
		return err
	}
	if o.Format == "ndjson" {
		ctx.SetContentType("application/x-ndjson")
	} else {
		ctx.SetContentType("text/csv; charset=utf-8")
	}
	ctx.Response.Header.Set("Cache-Control", "no-store")
	if st.More {
		// Query-escaped: ids may hold bytes a header cannot.
		ctx.Response.Header.Set("X-Next-After", url.QueryEscape(st.Last))
	}
	body := buf.Bytes()
	if len(body) > 1024 && ctx.Request.Header.HasAcceptEncoding("gzip") {
		ctx.Response.Header.Set("Content-Encoding", "gzip")
		ctx.Response.Header.Add("Vary", "Accept-Encoding")
		ctx.SetBody(fasthttp.AppendGzipBytes(nil, body))
	} else {
		ctx.SetBody(body)
	}
	if cap(body) <= maxPooledBody {
		*bp = body[:0]
	}
	return nil
}
