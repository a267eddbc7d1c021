package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// connPool hands out keep-alive HTTP/1.1 connections to one host, at most
// max open at once. bench speaks HTTP itself, over plain net.Conns, rather
// than through a general client: writing a prepared request and reading a
// status line and Content-Length is all a load generator needs, and every
// microsecond it spends is a microsecond the server under test does not get
// on a shared machine.
type connPool struct {
	addr    string
	timeout time.Duration
	idle    chan *conn
	slots   chan struct{} // one token per open connection
}

func newConnPool(addr string, max int, timeout time.Duration) *connPool {
	return &connPool{addr: addr, timeout: timeout, idle: make(chan *conn, max), slots: make(chan struct{}, max)}
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
		nc, err := net.DialTimeout("tcp", p.addr, p.timeout)
		if err != nil {
			<-p.slots
			return nil, err
		}
		return &conn{c: nc, br: bufio.NewReaderSize(nc, 16<<10)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	br   *bufio.Reader
	wbuf []byte
}

var errBadResponse = errors.New("bench: malformed HTTP response")

// do sends one request and reads the whole response. It returns the status
// and whether the connection may be reused.
func (c *conn) do(method, host, path string, body []byte, auth string, deadline time.Time) (int, bool, error) {
	b := append(c.wbuf[:0], method...)
	b = append(append(append(b, ' '), path...), " HTTP/1.1\r\nHost: "...)
	b = append(append(b, host...), "\r\n"...)
	if len(body) > 0 {
		b = append(b, "Content-Type: application/x-ndjson\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
		b = append(b, "\r\n"...)
		if auth != "" {
			b = append(append(append(b, "Authorization: Bearer "...), auth...), "\r\n"...)
		}
	}
	b = append(append(b, "\r\n"...), body...)
	c.wbuf = b
	if err := c.c.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if _, err := c.c.Write(b); err != nil {
		return 0, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// HTTP/1.1 200 OK
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("%w: status line %q", errBadResponse, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("%w: status %q", errBadResponse, line[9:12])
	}
	length, chunked, reuse := -1, false, line[7] == '1'
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, false, fmt.Errorf("%w: header %q", errBadResponse, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: content-length %q", errBadResponse, value)
			}
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "connection"):
			if asciiEqualFold(value, "close") {
				reuse = false
			}
		}
	}
	switch {
	case chunked:
		err = c.discardChunked()
	case length >= 0:
		_, err = c.br.Discard(length)
	case method == "HEAD" || status == 204 || status == 304:
	default:
		return status, false, nil // body until close: not reusable
	}
	return status, reuse && err == nil, err
}

func (c *conn) discardChunked() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, _, _ := bytes.Cut(bytes.TrimSpace(line), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadResponse, size)
		}
		if n == 0 {
			for { // trailers, then the empty line
				line, err = c.br.ReadSlice('\n')
				if err != nil || len(line) <= 2 {
					return err
				}
			}
		}
		if _, err := c.br.Discard(int(n) + 2); err != nil {
			return err
		}
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
