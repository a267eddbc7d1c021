package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// allCommands returns every command of the table, subcommands included.
func allCommands(cs []*command) []*command {
	var all []*command
	for _, c := range cs {
		all = append(all, c)
		all = append(all, allCommands(c.subs)...)
	}
	return all
}

// TestHelp asks every command of the table for its help, in each way a
// newcomer may ask: -h, --help and edgerec help CMD print it on stdout and
// exit 0; an unknown flag exits 2 with the error and the help on stderr.
// A command added to the table is tested without touching this test.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"help", "-h"}} {
		code, out, errs := run(t, args...)
		if code != 0 || errs != "" || !strings.HasPrefix(out, "edgerec — ") && !strings.HasPrefix(out, "Usage: edgerec help") {
			t.Fatalf("edgerec %s: exit %d, stdout %q, stderr %q; want 0 and the help on stdout only", strings.Join(args, " "), code, out, errs)
		}
	}
	_, usage, _ := run(t, "--help")
	all := allCommands(commands)
	if len(all) < 15 {
		t.Fatalf("the command table holds %d commands; want every one (build, eval, …, snapshot unpack)", len(all))
	}
	for _, c := range all {
		t.Run(strings.ReplaceAll(c.path, " ", "_"), func(t *testing.T) {
			t.Parallel()
			words := strings.Fields(c.path)
			if c.run != nil && !strings.Contains(usage, "\n  edgerec "+c.path+" ") {
				t.Errorf("edgerec --help does not list %q:\n%s", c.path, usage)
			}
			if c.summary == "" || c.run != nil && c.about == "" {
				t.Errorf("%q has no summary or no about paragraph", c.path)
			}
			var first string
			for _, how := range [][]string{
				append(append([]string(nil), words...), "-h"),
				append(append([]string(nil), words...), "--help"),
				append([]string{"help"}, words...),
			} {
				code, out, errs := run(t, how...)
				if code != 0 || errs != "" || !strings.HasPrefix(out, "Usage: edgerec "+c.path) {
					t.Fatalf("edgerec %s: exit %d, stdout %q, stderr %q; want 0 and 'Usage: edgerec %s…' on stdout only",
						strings.Join(how, " "), code, out, errs, c.path)
				}
				if first == "" {
					first = out
				} else if out != first {
					t.Fatalf("edgerec %s printed another help than -h:\n%s\nwant:\n%s", strings.Join(how, " "), out, first)
				}
			}
			for _, s := range c.subs {
				if !strings.Contains(first, "edgerec "+s.path) {
					t.Errorf("the help of %q does not list its subcommand %q:\n%s", c.path, s.path, first)
				}
			}
			code, out, errs := run(t, append(words, "--no-such-flag")...)
			want := "flag provided but not defined: -no-such-flag"
			if c.run == nil {
				want = `unknown command "--no-such-flag"`
			}
			if code != 2 || out != "" || !strings.HasPrefix(errs, "edgerec "+c.path+": "+want) || !strings.Contains(errs, "Usage: edgerec "+c.path) {
				t.Fatalf("edgerec %s --no-such-flag: exit %d, stdout %q, stderr %q; want 2, %q and the help on stderr", c.path, code, out, errs, want)
			}
		})
	}
}

// TestHealth: edgerec health exits 0 when the server answers 2xx and 1
// otherwise, saying why; a wildcard listen address is probed on loopback.
func TestHealth(t *testing.T) {
	t.Parallel()
	ready := make(chan bool, 1)
	ready <- false
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := <-ready
		ready <- ok
		switch {
		case r.URL.Path == "/healthz":
			w.Write([]byte("ok\n"))
		case r.URL.Path == "/readyz" && ok:
			w.Write([]byte("ready\n"))
		case r.URL.Path == "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("no snapshot loaded\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer ts.Close()
	_, port, _ := net.SplitHostPort(ts.Listener.Addr().String())

	f := func(env string, wantCode int, want string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), bin, append([]string{"health"}, args...)...)
		cmd.Env = os.Environ()
		if env != "" {
			cmd.Env = append(cmd.Env, "EDGEREC_ADDR="+env)
		}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		got := out.String()
		if wantCode != 0 {
			got = errb.String()
		}
		if code != wantCode || !strings.Contains(got, want) {
			t.Fatalf("health %v (EDGEREC_ADDR=%s): exit %d, stdout %q, stderr %q; want %d and %q", args, env, code, out.String(), errb.String(), wantCode, want)
		}
	}
	f("", 1, "/readyz: 503 Service Unavailable: no snapshot loaded", "--addr", "127.0.0.1:"+port)
	f("", 0, "/healthz: 200 OK", "--addr", "127.0.0.1:"+port, "--path", "/healthz")
	<-ready
	ready <- true
	f("", 0, "http://127.0.0.1:"+port+"/readyz: 200 OK", "--addr", "127.0.0.1:"+port)
	f("", 0, "http://127.0.0.1:"+port+"/readyz: 200 OK", "--addr", ":"+port)
	f("0.0.0.0:"+port, 0, "http://127.0.0.1:"+port+"/readyz: 200 OK")
	f("", 0, "/readyz: 200 OK", "--url", ts.URL+"/readyz")
	f("", 1, "404 Not Found", "--url", ts.URL+"/nope")
	f("", 1, "cannot GET", "--addr", freeAddr(t))
	f("", 2, `unexpected argument "x"`, "x")
}
