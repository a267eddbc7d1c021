package server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgerec/edgerec/engine"
)

// rawConn is a client connection that sends requests byte for byte as
// written (malformed ones too, which an HTTP client would refuse to send)
// and reads answers with net/http's parser. seen keeps every byte read.
type rawConn struct {
	net.Conn
	r    *bufio.Reader
	seen bytes.Buffer
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawConn{Conn: conn}
	c.r = bufio.NewReader(io.TeeReader(conn, &c.seen))
	return c
}

// rawAnswer is an answer as read off the wire.
type rawAnswer struct {
	status int
	header http.Header
	body   string
	close  bool // Connection: close (net/http takes it out of header)
}

// send writes req and reads one answer (5 s at most).
func (c *rawConn) send(t testing.TB, req string) rawAnswer {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write %.60q: %v", req, err)
	}
	return c.read(t)
}

// read reads one answer (5 s at most).
func (c *rawConn) read(t testing.TB) rawAnswer {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		t.Fatalf("read answer: %v (read so far %q)", err, c.seen.String())
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return rawAnswer{status: resp.StatusCode, header: resp.Header, body: string(body), close: resp.Close}
}

// closed reports whether the server closed the connection: a read ends
// with EOF (or a reset) within 5 s, with no byte more.
func (c *rawConn) closed(t testing.TB) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	n, err := c.r.Read(b[:])
	var ne net.Error
	if n > 0 || errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

// syncBuffer is a bytes.Buffer for a logger written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestKeysNeverEchoed sends every kind of bad authorization to write,
// admin and pprof endpoints and looks for the keys, as sent or base64-
// encoded, in everything the server wrote back (status lines, headers,
// bodies) and in its log, unthrottled for the test. The log must hold a
// line for each refusal, so the search is not of an empty log. On the
// code before issue 14, the 400 answer to a header with a control byte
// quoted the whole request, key included, and so did the log.
func TestKeysNeverEchoed(t *testing.T) {
	const apiKey, adminKey = "api-SECRET-7f3a9c1e5b2d", "admin-SECRET-d41d8cd98f00"
	var logs syncBuffer
	eo := engine.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	s, _ := testServer(t, eo, Options{APIKey: apiKey, AdminKey: adminKey})
	s.logs.every.Store(0)

	type endpoint struct{ method, path, body, key string }
	endpoints := []endpoint{
		{"PUT", "/v1/items", `[{"item_id":"i44","stock":0}]`, apiKey},
		{"POST", "/v1/events", `{"user_id":"u1","item_id":"i44","event":"purchase","value":9}`, apiKey},
		{"GET", "/v1/users/u1", "", apiKey},
		{"GET", "/v1/admin/status", "", adminKey},
		{"POST", "/v1/admin/snapshots", "", adminKey},
		{"POST", "/v1/admin/config", "", adminKey},
		{"GET", "/debug/pprof/", "", adminKey},
		{"GET", "/debug/pprof/heap", "", adminKey},
		{"GET", "/debug/pprof/cmdline", "", adminKey},
	}
	other := map[string]string{apiKey: adminKey, adminKey: apiKey}
	var answers strings.Builder
	refused, unreadable := 0, 0
	for _, ep := range endpoints {
		k := ep.key
		cases := []struct {
			name, query string
			header      []string // raw header lines
			want        int
		}{
			{"no header", "", nil, 401},
			{"basic scheme", "", []string{"Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+k))}, 401},
			{"token scheme", "", []string{"Authorization: Token " + k}, 401},
			{"no space", "", []string{"Authorization: Bearer" + k}, 401},
			{"colon", "", []string{"Authorization: Bearer:" + k}, 401},
			{"bare key", "", []string{"Authorization: " + k}, 401},
			{"trailing word", "", []string{"Authorization: Bearer " + k + " extra"}, 401},
			{"control byte", "", []string{"Authorization: Bearer " + k + "\x01"}, 400},
			{"NUL byte", "", []string{"Authorization: Bearer \x00" + k}, 400},
			{"header name with space", "", []string{"Authorization : Bearer " + k}, 400},
			{"wrong key", "", []string{"Authorization: Bearer " + k[:len(k)-1] + "x"}, 401},
			{"the other key", "", []string{"Authorization: Bearer " + other[k]}, 401},
			{"key twice", "", []string{"Authorization: Bearer " + k + k}, 401},
			{"key in the query", "?key=" + k + "&api_key=" + k + "&access_token=" + k, nil, 401},
			{"key in another header", "", []string{"X-Api-Key: " + k}, 401},
			{"very long header", "", []string{"Authorization: Bearer " + k + strings.Repeat("A", 10000)}, 431},
			{"very long header, key last", "", []string{"Authorization: Bearer " + strings.Repeat("A", 10000) + k}, 431},
		}
		for _, tc := range cases {
			req := ep.method + " " + ep.path + tc.query + " HTTP/1.1\r\nHost: edgerec\r\nConnection: close\r\n"
			for _, h := range tc.header {
				req += h + "\r\n"
			}
			req += "Content-Length: " + itoa(len(ep.body)) + "\r\n\r\n" + ep.body
			c := dialRaw(t, s.addr)
			a := c.send(t, req)
			want := tc.want
			if tc.query != "" && strings.HasPrefix(ep.path, "/v1/") {
				want = 400 // unknown query parameters, named, their values not
			}
			if a.status != want {
				t.Errorf("%s %s, %s: %d %s; want %d", ep.method, ep.path, tc.name, a.status, a.body, want)
			}
			switch {
			case a.status == 401:
				refused++
			case !strings.Contains(a.body, "unknown_parameter"):
				unreadable++
			}
			c.closed(t)
			answers.WriteString(c.seen.String())
		}
	}
	log := logs.String()
	for _, secret := range []string{apiKey, adminKey, "SECRET", base64.StdEncoding.EncodeToString([]byte("admin:" + apiKey))[:16],
		base64.StdEncoding.EncodeToString([]byte("admin:" + adminKey))[:16]} {
		if i := strings.Index(answers.String(), secret); i >= 0 {
			t.Errorf("an answer holds %q: …%s…", secret, answers.String()[max(i-200, 0):min(i+100, answers.Len())])
		}
		if i := strings.Index(log, secret); i >= 0 {
			t.Errorf("the log holds %q: …%s…", secret, log[max(i-200, 0):min(i+100, len(log))])
		}
	}
	if n := strings.Count(log, "refused: missing or wrong key"); n != refused {
		t.Errorf("%d refusal lines in the log for %d refusals:\n%s", n, refused, log)
	}
	if n := strings.Count(log, "cannot read request"); n != unreadable {
		t.Errorf("%d unreadable-request lines in the log for %d such requests:\n%s", n, unreadable, log)
	}
	// The keys do work, so the refusals above were not of broken keys;
	// the scheme is case-insensitive (RFC 9110).
	c := dialRaw(t, s.addr)
	for _, r := range []struct {
		req  string
		want int
	}{
		{"GET /v1/admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey + "\r\n\r\n", 200},
		{"GET /v1/admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: bearer " + adminKey + "\r\n\r\n", 200},
		{"GET /v1/admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apiKey + "\r\n\r\n", 401},
		{"GET /debug/pprof/heap?debug=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + adminKey + "\r\n\r\n", 200},
		{"GET /v1/users/u1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer   " + apiKey + "\r\n\r\n", 404}, // past the key: no such user
	} {
		if a := c.send(t, r.req); a.status != r.want {
			t.Errorf("%.60q: %d %s; want %d", r.req, a.status, a.body, r.want)
		}
	}
}

// TestLogThrottle: one line a second, and the next line says how many
// were dropped.
func TestLogThrottle(t *testing.T) {
	th := newLogThrottle(time.Second)
	f := func(at time.Duration, wantOK bool, wantDropped uint64) {
		t.Helper()
		ok, dropped := th.allow(int64(time.Hour + at))
		if ok != wantOK || dropped != wantDropped {
			t.Fatalf("at %v: %v, %d dropped; want %v, %d", at, ok, dropped, wantOK, wantDropped)
		}
	}
	f(0, true, 0)
	f(time.Millisecond, false, 0)
	f(999*time.Millisecond, false, 0)
	f(time.Second, true, 2)
	f(1500*time.Millisecond, false, 0)
	f(5*time.Second, true, 1)
	f(5*time.Second, false, 0)
	th.every.Store(0)
	f(5*time.Second, true, 1)
	f(5*time.Second, true, 0)
}

// TestRequestSmuggling sends requests with both Content-Length and
// Transfer-Encoding over raw TCP: each gets one 400 and the connection
// closes, so a request hidden in the body is never answered. Either
// header alone is taken.
func TestRequestSmuggling(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{})
	const event = `{"user_id":"u1","item_id":"1","event":"view"}`
	chunked := "2d\r\n" + event + "\r\n0\r\n\r\n"
	hidden := "GET /v1/admin/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testKey + "\r\n\r\n"
	f := func(name, headers, body string) {
		t.Helper()
		c := dialRaw(t, s.addr)
		a := c.send(t, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+"\r\n"+headers+"\r\n"+body)
		if a.status != 400 || !a.close {
			t.Errorf("%s: %d %v %s; want 400 and Connection: close", name, a.status, a.header, a.body)
		}
		if !c.closed(t) {
			t.Errorf("%s: the connection stays open: %q", name, c.seen.String())
		}
	}
	f("CL then TE", "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", chunked)
	f("TE then CL", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunked)
	f("lower case", "content-length: 4\r\ntransfer-encoding: chunked\r\n", chunked)
	f("identity", "Transfer-Encoding: identity\r\nContent-Length: 45\r\n", event)
	f("a request hidden in the body", "Content-Length: "+itoa(len(chunked)+len(hidden))+"\r\nTransfer-Encoding: chunked\r\n", chunked+hidden)
	// HTTP/1.0 may not carry Transfer-Encoding at all (RFC 9112, 6.1).
	c := dialRaw(t, s.addr)
	if a := c.send(t, "POST /v1/events HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked); a.status != 400 {
		t.Errorf("HTTP/1.0 with Transfer-Encoding: %d %s", a.status, a.body)
	}
	// Either alone is fine, several requests on one connection.
	c = dialRaw(t, s.addr)
	for _, r := range []string{
		"Content-Length: 45\r\n\r\n" + event,
		"Transfer-Encoding: chunked\r\n\r\n" + chunked,
		"Content-Length: 45\r\n\r\n" + event,
	} {
		if a := c.send(t, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+"\r\n"+r); a.status != 200 {
			t.Fatalf("%.40q: %d %s", r, a.status, a.body)
		}
	}
}

// TestHeaderLimits: the request line and the headers together are
// bounded by MaxHeaderBytes (default 8192): over it 431, under it served.
func TestHeaderLimits(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{})
	f := func(path, header string, want int) {
		t.Helper()
		c := dialRaw(t, s.addr)
		a := c.send(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+header+"\r\n")
		if a.status != want {
			t.Fatalf("%d-byte path, %d-byte header: %d %s; want %d", len(path), len(header), a.status, a.body, want)
		}
		if want == 431 && !c.closed(t) {
			t.Fatalf("431: the connection stays open")
		}
	}
	f("/v1/popular?k=3&exclude="+strings.Repeat("x,", 3000), "", 200) // over fasthttp's default of 4096
	f("/v1/popular?k=3&exclude="+strings.Repeat("x,", 4500), "", 431)
	f("/v1/popular?k=3", "X-Pad: "+strings.Repeat("x", 6000)+"\r\n", 200)
	f("/v1/popular?k=3", "X-Pad: "+strings.Repeat("x", 9000)+"\r\n", 431)
	f("/v1/popular?k=3", strings.Repeat("X-Pad: "+strings.Repeat("x", 500)+"\r\n", 20), 431)
}

func TestHeaderLimitOption(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{MaxHeaderBytes: 2048})
	c := dialRaw(t, s.addr)
	if a := c.send(t, "GET /v1/popular?k=3&pad="+strings.Repeat("x", 3000)+" HTTP/1.1\r\nHost: x\r\n\r\n"); a.status != 431 ||
		!strings.Contains(a.body, "over 2048 bytes") {
		t.Fatalf("MaxHeaderBytes 2048: %d %s", a.status, a.body)
	}
}

// TestPprof: /debug/pprof/ and its profiles answer with the admin key
// and 401 without it (fasthttp's pprofhandler answered the index 404).
func TestPprof(t *testing.T) {
	s, _ := testServer(t, engine.Options{}, Options{AdminKey: "admin-key"})
	c := dialRaw(t, s.addr)
	f := func(path, key string, want int, wantBody string) {
		t.Helper()
		req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
		if key != "" {
			req += "Authorization: Bearer " + key + "\r\n"
		}
		a := c.send(t, req+"\r\n")
		if a.status != want || !strings.Contains(a.body, wantBody) {
			t.Fatalf("%s with key %q: %d %.300s; want %d with %q", path, key, a.status, a.body, want, wantBody)
		}
	}
	f("/debug/pprof/", "admin-key", 200, "Types of profiles available")
	f("/debug/pprof/goroutine?debug=1", "admin-key", 200, "goroutine profile:")
	f("/debug/pprof/heap?debug=1", "admin-key", 200, "heap profile:")
	f("/debug/pprof/cmdline", "admin-key", 200, "")
	f("/debug/pprof/nosuch", "admin-key", 404, "Unknown profile")
	f("/debug/pprof", "admin-key", 308, "")
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline", "/debug/pprof"} {
		f(p, "", 401, "unauthorized")
		f(p, testKey, 401, "unauthorized") // the API key is not the admin key
	}
	f("/debug/pprofile", "admin-key", 404, "not_found")
}
