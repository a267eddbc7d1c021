package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// runHealth probes a running server: exit 0 when it answers 2xx, 1
// otherwise. Images without a shell or curl (scratch, distroless) run it
// as their HEALTHCHECK.
func runHealth(c *command, args []string) error {
	fs := c.flagSet()
	addr := fs.String("addr", "127.0.0.1:8080", "the server's listen address, as given to serve's --addr; a wildcard host (0.0.0.0, ::, none) is probed on loopback (env EDGEREC_ADDR, the twin of serve's --addr)")
	path := fs.String("path", "/readyz", "path to GET: /readyz answers 200 once a snapshot is loaded, /healthz as soon as the process serves")
	url := fs.String("url", "", "the URL to GET, instead of --addr and --path")
	timeout := fs.Duration("timeout", 2*time.Second, "how long the answer may take")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("edgerec health: unexpected argument %q", fs.Arg(0))}
	}
	if !flagGiven(fs, "addr") {
		if v := os.Getenv("EDGEREC_ADDR"); v != "" {
			*addr = v
		}
	}
	u := *url
	if u == "" {
		host, err := probeHost(*addr)
		if err != nil {
			return err
		}
		u = "http://" + host + *path
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get(u)
	if err != nil {
		return fmt.Errorf("cannot GET %q: %w", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	fmt.Printf("%s: %s\n", u, resp.Status)
	return nil
}

// probeHost returns the host:port that reaches a server listening on
// addr from the same machine: loopback for a wildcard host.
func probeHost(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port), nil
}

// flagGiven reports whether the command line set the flag name.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}
