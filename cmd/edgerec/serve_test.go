package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeConnectionFlags: serve's connection flags and their
// environment twins reach the server, bad values are refused, and a
// generated key stays out of the log.
func TestServeConnectionFlags(t *testing.T) {
	f := serveFlagsOf(t, []string{"--max-conns", "50", "--read-timeout", "2s"}, map[string]string{
		"EDGEREC_MAX_CONNS_PER_IP": "1", "EDGEREC_CONCURRENCY": "7", "EDGEREC_MAX_HEADER_BYTES": "4096", "EDGEREC_IDLE_TIMEOUT": "9s",
	})
	if f.maxConns != 50 || f.maxConnsPerIP != 1 || f.concurrency != 7 || f.maxHead != 4096 ||
		f.readTimeout != 2*time.Second || f.writeTimeout != 5*time.Second || f.idleTimeout != 9*time.Second {
		t.Fatalf("flags %+v", f)
	}
	dir := t.TempDir()
	for _, c := range []struct{ flag, value, want string }{
		{"--max-conns", "-1", "-max-conns -1"},
		{"--max-conns-per-ip", "-2", "-max-conns-per-ip -2"},
		{"--read-timeout", "0s", "-read-timeout 0s"},
		{"--idle-timeout", "-1s", "-idle-timeout -1s"},
		{"--max-header-bytes", "100", "header limit 100"},
	} {
		if code, _, errs := run(t, "serve", "--data", dir, "--addr", "127.0.0.1:0", c.flag, c.value); code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("serve %s %s: exit %d, %s; want 1 naming %q", c.flag, c.value, code, errs, c.want)
		}
	}

	// A server with one connection per address: a second connection
	// while the first is inside a request is refused.
	events, items := genSample(t, dir, 3000, 3)
	data := filepath.Join(dir, "data")
	if code, _, errs := run(t, "build", "--events", events, "--items", items, "--out", filepath.Join(data, "snapshots")); code != 0 {
		t.Fatalf("build: %s", errs)
	}
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--data", data, "--addr", addr, "--max-conns-per-ip", "1")
	var logs lockedBuilder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &proc{cmd: cmd, addr: addr}
	defer s.stop(t)
	var busy net.Conn
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			busy = c
			break
		}
		if i == 200 {
			t.Fatalf("server not listening: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	defer busy.Close()
	if _, err := io.WriteString(busy, "GET /healthz HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	// Once the server has read busy's first bytes it counts it as inside
	// a request (until then a second connection would take its place):
	// ask /metrics from another address, 127.0.0.2, until it counts two
	// connections open (busy and the asking one) and none waiting.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
	for i := 0; ; i++ {
		resp, err := client.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Skipf("cannot ask from 127.0.0.2: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "\nedgerec_connections_idle 0\n") && strings.Contains(string(b), "\nedgerec_connections_open 2\n") {
			break
		}
		if i == 200 {
			t.Fatalf("the server never counted the first connection busy:\n%s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(second), nil)
	if err != nil || resp.StatusCode != 429 {
		t.Fatalf("second connection from the address: %v %v; want 429", resp, err)
	}
	if strings.Contains(logs.String(), "api_key") || !strings.Contains(logs.String(), "no -api-key given") {
		t.Fatalf("serve's log without -api-key:\n%s", logs.String())
	}
}

// lockedBuilder is a strings.Builder that a process's output can be
// copied into while the test reads it.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
