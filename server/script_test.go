package server

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/edgerec/edgerec/engine"
)

// scriptBudget is the most bytes the browser script may take gzipped.
const scriptBudget = 4096

func TestScriptSize(t *testing.T) {
	sc := browserScript
	t.Logf("edgerec.js: source %d bytes, served %d, gzipped %d (budget %d)", len(scriptSource), len(sc.body), len(sc.gz), scriptBudget)
	if len(sc.gz) >= scriptBudget {
		t.Fatalf("edgerec.js is %d bytes gzipped; the budget is under %d", len(sc.gz), scriptBudget)
	}
	zr, err := gzip.NewReader(bytes.NewReader(sc.gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(plain, sc.body) {
		t.Fatalf("the gzipped script does not decompress to the script: %v", err)
	}
}

// TestScriptMinified: the served script is the source less its comment
// lines, blank lines and indentation, and nothing else. (The browser test,
// cmd/edgerec, runs the served script.)
func TestScriptMinified(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		if got := string(minifyScript([]byte(src))); got != want {
			t.Fatalf("%q: %q; want %q", src, got, want)
		}
	}
	f("a();\n  // why\n\n\tb('//x'); // c\n  /*! keep */\n", "a();\nb('//x'); // c\n/*! keep */\n")
	f("", "")
	f("  x", "x")
	body := string(browserScript.body)
	if !strings.HasPrefix(body, "/*! edgerec.js") {
		t.Fatalf("the served script lost its header: %.40q", body)
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "//") || strings.HasPrefix(line, " ") {
			t.Fatalf("line left in the served script: %q", line)
		}
	}
	// Every statement of the source is there.
	var n int
	for _, line := range strings.Split(string(scriptSource), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "//") {
			n++
			if !strings.Contains(body, l) {
				t.Fatalf("the served script lost %q", l)
			}
		}
	}
	if n != strings.Count(body, "\n") {
		t.Fatalf("%d lines of code in the source, %d served", n, strings.Count(body, "\n"))
	}
}

func TestScriptEndpoint(t *testing.T) {
	s, _ := testServer(t, engine.Options{Config: sampleConfig(t)}, Options{})
	sc := browserScript
	f := func(method, uri string, status int, body []byte, cacheControl string, hdr ...string) {
		t.Helper()
		r := handle(s, method, uri, hdr...)
		if r.StatusCode() != status || !bytes.Equal(r.Body(), body) {
			t.Fatalf("%s %s %q: %d, %d bytes; want %d, %d bytes", method, uri, hdr, r.StatusCode(), len(r.Body()), status, len(body))
		}
		if status >= 300 && status != 304 {
			return
		}
		if got := string(r.Header.Peek("Cache-Control")); got != cacheControl {
			t.Fatalf("%s %s: Cache-Control %q; want %q", method, uri, got, cacheControl)
		}
		if got := string(r.Header.Peek("ETag")); got != `"`+sc.version+`"` {
			t.Fatalf("%s %s: ETag %q", method, uri, got)
		}
		if got := string(r.Header.Peek("Vary")); got != "Accept-Encoding" {
			t.Fatalf("%s %s: Vary %q", method, uri, got)
		}
		gz := bytes.Equal(body, sc.gz)
		if got := string(r.Header.Peek("Content-Encoding")); (got == "gzip") != gz {
			t.Fatalf("%s %s: Content-Encoding %q", method, uri, got)
		}
		if status == 200 && string(r.Header.ContentType()) != "text/javascript; charset=utf-8" {
			t.Fatalf("%s %s: Content-Type %q", method, uri, r.Header.ContentType())
		}
	}
	f("GET", "/v1/edgerec.js", 200, sc.body, scriptMaxAge)
	f("GET", "/v1/edgerec.js", 200, sc.gz, scriptMaxAge, "Accept-Encoding", "gzip, deflate, br")
	f("GET", "/v1/edgerec.js?v="+sc.version, 200, sc.gz, scriptMaxAgeVersioned, "Accept-Encoding", "gzip")
	f("GET", "/v1/edgerec.js?v=0123456789abcdef", 200, sc.body, scriptMaxAge) // another version: not for a year
	f("GET", "/v1/edgerec.js", 304, nil, scriptMaxAge, "If-None-Match", `"`+sc.version+`"`)
	f("GET", "/v1/edgerec.js", 304, nil, scriptMaxAge, "If-None-Match", `"x", W/"`+sc.version+`"`)
	f("GET", "/v1/edgerec.js", 304, nil, scriptMaxAge, "If-None-Match", `*`)
	f("GET", "/v1/edgerec.js", 200, sc.body, scriptMaxAge, "If-None-Match", `"0123456789abcdef"`)
	f("HEAD", "/v1/edgerec.js", 200, sc.body, scriptMaxAge) // in process: fasthttp drops a HEAD's body on the wire
	f("POST", "/v1/edgerec.js", 405, []byte(`{"error":{"code":"method_not_allowed","message":"method not allowed on this endpoint"}}`+"\n"), "")
}

func TestETagMatch(t *testing.T) {
	f := func(header string, want bool) {
		t.Helper()
		if got := etagMatch([]byte(header), "abc"); got != want {
			t.Fatalf("%q: %v; want %v", header, got, want)
		}
	}
	f(`"abc"`, true)
	f(`W/"abc"`, true)
	f(` "x" ,"abc"`, true)
	f(`*`, true)
	f(``, false)
	f(`abc`, false)
	f(`"abcd"`, false)
	f(`"ab"`, false)
	f(`"`, false)
}
