package engine

import (
	"bytes"
	"net/url"
	"testing"
	"unicode"
	"unicode/utf8"
)

// What a landing-page decision reads from a visit (visit.go) comes from
// anyone's browser: the search term, the referrer URL, the User-Agent.
// Seed corpora: testdata/fuzz/FuzzNormalizeKeyword and FuzzReferrer.

// FuzzNormalizeKeyword: the folded keyword is valid UTF-8, lower case,
// single-spaced and trimmed; folding it again changes nothing (a rule
// compares a folded request with keywords written in the config, and
// both must fold to the same); what was in dst is kept.
func FuzzNormalizeKeyword(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte) {
		out := normalizeKeyword([]byte("dst:"), src)
		if !bytes.HasPrefix(out, []byte("dst:")) {
			t.Fatalf("%q: dst lost: %q", src, out)
		}
		out = out[len("dst:"):]
		if !utf8.Valid(out) {
			t.Fatalf("%q folds to invalid UTF-8 %q", src, out)
		}
		if bytes.HasPrefix(out, []byte(" ")) || bytes.HasSuffix(out, []byte(" ")) || bytes.Contains(out, []byte("  ")) {
			t.Fatalf("%q folds to %q: spaces not single or not trimmed", src, out)
		}
		for _, r := range string(out) {
			if r != ' ' && unicode.IsSpace(r) {
				t.Fatalf("%q folds to %q, which holds the space %U", src, out, r)
			}
			if unicode.IsUpper(r) && unicode.ToLower(r) != r {
				t.Fatalf("%q folds to %q, which holds the upper case %U", src, out, r)
			}
		}
		if again := normalizeKeyword(nil, out); !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q folds to %q, then to %q", src, out, again)
		}
	})
}

// FuzzReferrer: splitURL returns a host without path, query or fragment
// characters and a query without fragment, both cut from the URL;
// queryValue finds what net/url's ParseQuery finds wherever that parses
// the query, keeps dst, and never writes more than the query holds;
// searchEngine and device answer from their lists; isBot, which scans
// long User-Agents in windows, finds what a plain search of the whole
// lower-cased User-Agent for the same markers finds.
func FuzzReferrer(f *testing.F) {
	f.Fuzz(func(t *testing.T, ref []byte, key string, ua []byte) {
		host, query := splitURL(ref)
		if bytes.ContainsAny(host, "/?#") || bytes.ContainsRune(query, '#') {
			t.Fatalf("%q: host %q, query %q", ref, host, query)
		}
		if !bytes.Contains(ref, host) || !bytes.Contains(ref, query) {
			t.Fatalf("%q: host %q or query %q not from the URL", ref, host, query)
		}
		if len(query) > 0 && !bytes.Contains(ref, append([]byte("?"), query...)) {
			t.Fatalf("%q: query %q does not follow a '?'", ref, query)
		}

		val, found := queryValue([]byte("dst:"), query, key)
		if !bytes.HasPrefix(val, []byte("dst:")) {
			t.Fatalf("%q, %q: dst lost: %q", query, key, val)
		}
		val = val[len("dst:"):]
		if len(val) > len(query) {
			t.Fatalf("%q, %q: a value of %d bytes from a query of %d", query, key, len(val), len(query))
		}
		if !found && len(val) > 0 {
			t.Fatalf("%q, %q: not found, yet %q", query, key, val)
		}
		// net/url refuses ';' and malformed escapes, and skips empty
		// arguments, which match an empty key here: compare elsewhere.
		if m, err := url.ParseQuery(string(query)); err == nil && key != "" {
			want, ok := m[key]
			if ok != found || ok && want[0] != string(val) {
				t.Fatalf("query %q, key %q: found %v %q; net/url: %v %q", query, key, found, val, ok, want)
			}
		}

		if e := searchEngine(host); e != "" && !bytes.Contains(host, []byte(e)) {
			t.Fatalf("host %q: search engine %q", host, e)
		}
		switch d := device(ua); d {
		case "mobile", "tablet", "desktop":
		default:
			t.Fatalf("%q: device %q", ua, d)
		}
		lower := bytes.Clone(ua)
		for i, c := range lower {
			if 'A' <= c && c <= 'Z' {
				lower[i] = c + 'a' - 'A'
			}
		}
		want := isBotProduct(lower)
		for _, m := range botMarkers {
			for i := 0; i+len(m) <= len(lower); i++ {
				if string(lower[i:i+len(m)]) == m && !inNotBot(lower, i) {
					want = true
				}
			}
		}
		if markedBot(ua) != want {
			t.Fatalf("%q: markedBot %v, want %v", ua, !want, want)
		}
		if want && !isBot(ua) {
			t.Fatalf("%q: marked, but isBot false", ua)
		}
	})
}
