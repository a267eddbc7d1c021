package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// connPool hands out keep-alive HTTP/1.1 connections to one host, at most
// max open at once. bench speaks HTTP itself, over plain net.Conns (TLS
// ones for https), rather than through a general client: writing a
// prepared request and reading a status line and Content-Length is all a
// load generator needs, and every microsecond it spends is a microsecond
// the server under test does not get on a shared machine.
type connPool struct {
	addr    string
	tls     *tls.Config // nil: plain TCP
	timeout time.Duration
	idle    chan *conn
	slots   chan struct{} // one token per open connection
}

func newConnPool(addr string, tlsConf *tls.Config, max int, timeout time.Duration) *connPool {
	return &connPool{addr: addr, tls: tlsConf, timeout: timeout, idle: make(chan *conn, max), slots: make(chan struct{}, max)}
}

// dial opens a connection, with its TLS handshake done for https.
func (p *connPool) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: p.timeout}
	if p.tls == nil {
		return d.DialContext(ctx, "tcp", p.addr)
	}
	td := tls.Dialer{NetDialer: &d, Config: p.tls}
	return td.DialContext(ctx, "tcp", p.addr)
}

// get returns an idle connection, dials a new one while under the limit,
// or waits for one to come back.
func (p *connPool) get(ctx context.Context) (*conn, error) {
	select {
	case c := <-p.idle:
		return c, nil
	default:
	}
	select {
	case c := <-p.idle:
		return c, nil
	case p.slots <- struct{}{}:
		nc, err := p.dial(ctx)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return &conn{c: nc}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// preconnect dials n connections and leaves them idle in the pool.
func (p *connPool) preconnect(ctx context.Context, n int) error {
	for range n {
		p.slots <- struct{}{}
		nc, err := p.dial(ctx)
		if err != nil {
			<-p.slots
			return fmt.Errorf("cannot connect to %s: %w", p.addr, err)
		}
		p.idle <- &conn{c: nc}
	}
	return nil
}

// put returns c for reuse, or closes it when it cannot be reused.
func (p *connPool) put(c *conn, reuse bool) {
	if reuse {
		select {
		case p.idle <- c:
			return
		default:
		}
	}
	_ = c.c.Close()
	<-p.slots
}

// closeIdle closes the idle connections.
func (p *connPool) closeIdle() {
	for {
		select {
		case c := <-p.idle:
			_ = c.c.Close()
			<-p.slots
		default:
			return
		}
	}
}

// conn is one keep-alive connection.
type conn struct {
	c    net.Conn
	rb   respBuf
	wbuf []byte
}

var errBadResponse = errors.New("bench: malformed HTTP response")

// do sends one request and reads the whole response. It returns the status
// and whether the connection may be reused.
func (c *conn) do(h *requestHead, method, path string, body []byte, deadline time.Time) (int, bool, error) {
	c.wbuf = h.append(c.wbuf[:0], method, path, body)
	if err := c.c.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if _, err := c.c.Write(c.wbuf); err != nil {
		return 0, false, err
	}
	c.rb.start(method)
	for {
		done, err := c.rb.parse()
		if err != nil || done {
			return c.rb.p.status, c.rb.p.reuse && err == nil, err
		}
		n, err := c.c.Read(c.rb.free())
		c.rb.filled(n)
		if err != nil && n == 0 {
			return c.rb.p.status, false, err
		}
	}
}

// requestHead is what every request of an attack carries besides its
// target: the Host header, the API key (sent with bodies: the events
// POSTs) and the --header lines, rendered once.
type requestHead struct {
	host   string
	auth   string
	extra  []byte      // "Name: value\r\n" lines
	fields [][2]string // the same as name and value (fastClient)
	bearer string      // "Bearer " + auth
	// ownType and ownAuth: --header gave Content-Type or Authorization,
	// which replace bench's own on POSTs.
	ownType, ownAuth bool
}

// newRequestHead checks headers ("Name: value" each) and renders them. A
// Host header replaces the URL's host; Content-Length and
// Transfer-Encoding are bench's to write.
func newRequestHead(host, auth string, headers []string) (*requestHead, error) {
	h := &requestHead{host: host, auth: auth, bearer: "Bearer " + auth}
	for _, line := range headers {
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.IndexFunc(name, notTokenChar) >= 0 || strings.IndexFunc(value, notFieldChar) >= 0 {
			return nil, fmt.Errorf("header %q: want \"Name: value\" on one line, without control characters", line)
		}
		switch strings.ToLower(name) {
		case "host":
			if value == "" {
				return nil, fmt.Errorf("header %q: an empty Host", line)
			}
			h.host = value
			continue
		case "content-length", "transfer-encoding":
			return nil, fmt.Errorf("header %q: bench writes %s itself", line, name)
		case "content-type":
			h.ownType = true
		case "authorization":
			h.ownAuth = true
		}
		h.extra = append(append(append(append(h.extra, name...), ": "...), value...), "\r\n"...)
		h.fields = append(h.fields, [2]string{name, value})
	}
	return h, nil
}

// CheckHeaders reports the first header line an attack would refuse.
func CheckHeaders(headers []string) error {
	_, err := newRequestHead("", "", headers)
	return err
}

// notFieldChar reports a byte a header value cannot hold: controls other
// than tab (CR and LF among them: no header injection).
func notFieldChar(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }

// notTokenChar reports a rune an HTTP header name cannot hold.
func notTokenChar(r rune) bool {
	return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
}

// append appends an HTTP/1.1 request to dst.
func (h *requestHead) append(dst []byte, method, path string, body []byte) []byte {
	b := append(dst, method...)
	b = append(append(append(b, ' '), path...), " HTTP/1.1\r\nHost: "...)
	b = append(append(b, h.host...), "\r\n"...)
	b = append(b, h.extra...)
	if len(body) > 0 {
		if !h.ownType {
			b = append(b, "Content-Type: application/x-ndjson\r\n"...)
		}
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
		if h.auth != "" && !h.ownAuth {
			b = append(append(append(b, "Authorization: Bearer "...), h.auth...), "\r\n"...)
		}
	}
	return append(append(b, "\r\n"...), body...)
}

// respBufSize bounds a status or header line, as bufio's 16 KB buffer did.
const respBufSize = 16 << 10

// respBuf holds the bytes read from one connection that the parser has not
// consumed yet, in b[r:w]. Both drivers read into free() and parse: the
// goroutine per connection over net.Conn, and the epoll loop over raw
// non-blocking sockets, which may stop anywhere in a response.
type respBuf struct {
	b    []byte
	r, w int
	p    respParser
}

// start prepares for the response to a request with this method. Bytes
// left over from the previous response stay (they are the start of the
// next one, or garbage the parser will reject).
func (rb *respBuf) start(method string) {
	rb.p = respParser{method: method}
	if rb.b == nil {
		rb.b = make([]byte, respBufSize)
	}
}

// parse feeds the unparsed bytes to the parser. done means the response is
// complete; false with a nil error means the caller must read more into
// free(), then call filled.
func (rb *respBuf) parse() (done bool, err error) {
	n, done, err := rb.p.feed(rb.b[rb.r:rb.w])
	rb.r += n
	if rb.r == rb.w {
		rb.r, rb.w = 0, 0
	}
	if done || err != nil {
		return done, err
	}
	if rb.w == len(rb.b) { // a partial line at the end: make room
		if rb.r == 0 {
			return false, fmt.Errorf("%w: line longer than %d bytes", errBadResponse, len(rb.b))
		}
		rb.w = copy(rb.b, rb.b[rb.r:rb.w])
		rb.r = 0
	}
	return false, nil
}

// free returns the space to read into; valid until the next parse.
func (rb *respBuf) free() []byte { return rb.b[rb.w:] }

// filled records that n bytes were read into free().
func (rb *respBuf) filled(n int) { rb.w += max(n, 0) }

// respParser reads one HTTP/1.1 response as its bytes arrive. It keeps no
// copy: the body is only counted.
type respParser struct {
	method  string // of the request: a HEAD response has no body
	state   uint8
	status  int
	left    int64 // body or chunk bytes still to skip
	length  int64 // Content-Length; -1 if none
	chunked bool
	reuse   bool
}

const (
	psStatus    = iota // status line
	psHeader           // header lines up to the empty one
	psBody             // left bytes of a Content-Length body
	psChunkSize        // chunk size line
	psChunkData        // left bytes of chunk data and its CRLF
	psTrailer          // trailer lines up to the empty one
	psDone
)

// feed consumes what it can of b and returns how many bytes it used. A line
// is consumed only once it is whole: the caller keeps the rest of b and
// feeds it again with more bytes after it. done reports that the response
// is complete; then status and reuse hold its status and whether the
// connection may carry another request.
func (p *respParser) feed(b []byte) (n int, done bool, err error) {
	for p.state != psDone {
		if p.state == psBody || p.state == psChunkData {
			k := min(int64(len(b)-n), p.left)
			n += int(k)
			if p.left -= k; p.left > 0 {
				return n, false, nil
			}
			if p.state == psBody {
				p.state = psDone
			} else {
				p.state = psChunkSize
			}
			continue
		}
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			return n, false, nil
		}
		line := b[n : n+i+1]
		n += i + 1
		if err := p.line(line); err != nil {
			return n, false, err
		}
	}
	return n, true, nil
}

// line handles one whole line, '\n' included.
func (p *respParser) line(line []byte) error {
	switch p.state {
	case psStatus: // HTTP/1.1 200 OK
		if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
			return fmt.Errorf("%w: status line %q", errBadResponse, line)
		}
		status, err := strconv.Atoi(string(line[9:12]))
		if err != nil {
			return fmt.Errorf("%w: status %q", errBadResponse, line[9:12])
		}
		p.status, p.length, p.reuse, p.state = status, -1, line[7] == '1', psHeader
	case psHeader:
		if len(line) <= 2 {
			p.endHeader()
			return nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			length, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || length < 0 {
				return fmt.Errorf("%w: content-length %q", errBadResponse, value)
			}
			p.length = length
		case asciiEqualFold(name, "transfer-encoding"):
			p.chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				p.reuse = false
			}
		}
	case psChunkSize:
		size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadResponse, size)
		}
		if n == 0 {
			p.state = psTrailer
		} else {
			p.left, p.state = n+2, psChunkData
		}
	case psTrailer:
		if len(line) <= 2 {
			p.state = psDone
		}
	}
	return nil
}

// endHeader picks how the body ends.
func (p *respParser) endHeader() {
	switch {
	case p.method == "HEAD" || p.status == 204 || p.status == 304: // no body, whatever the headers say
		p.state = psDone
	case p.chunked:
		p.state = psChunkSize
	case p.length >= 0:
		p.left, p.state = p.length, psBody
	default: // body until close: not read, and the connection not reused
		p.reuse, p.state = false, psDone
	}
}

// asciiEqualFold compares b with the lower-case ASCII s, ignoring case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
