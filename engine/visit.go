package engine

import (
	"bytes"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// What a landing-page decision reads from a visit: the search keyword,
// the referrer's host and search engine, the device and whether the
// visitor is a bot.

// normalizeKeyword appends the search term folded for matching: Unicode
// NFKC (full-width letters and digits to half-width, half-width katakana
// to full-width, ideographic space to space), lower case, runs of spaces
// to one, trimmed. Folding a folded term changes nothing.
func normalizeKeyword(dst, src []byte) []byte {
	start := len(dst)
	dst = foldKeyword(dst, src)
	// Lower case can leave a term NFKC would change: "İ" lowers to "i",
	// which NFKC composes with a combining acute that followed into "í".
	// Such a term is folded again (rare: the common case is one pass),
	// after itself in dst, then moved down.
	for range 3 {
		if norm.NFKC.IsNormal(dst[start:]) {
			break
		}
		n := len(dst)
		dst = foldKeyword(dst, dst[start:n])
		dst = append(dst[:start], dst[n:]...)
	}
	return dst
}

// foldKeyword is one pass of normalizeKeyword. src may be dst's own bytes
// before len(dst).
func foldKeyword(dst, src []byte) []byte {
	start := len(dst)
	dst = norm.NFKC.Append(dst, src...)
	out := dst[:start]
	space := true
	tail := dst[start:]
	for len(tail) > 0 {
		r, n := utf8.DecodeRune(tail)
		tail = tail[n:]
		if unicode.IsSpace(r) {
			if !space {
				out = append(out, ' ')
				space = true
			}
			continue
		}
		space = false
		out = utf8.AppendRune(out, unicode.ToLower(r))
	}
	return bytes.TrimRight(out, " ")
}

// splitURL returns the host and the query of a URL without parsing it
// fully.
func splitURL(u []byte) (host, query []byte) {
	if i := bytes.Index(u, []byte("://")); i >= 0 && bytes.IndexAny(u[:i], "/?#") < 0 {
		u = u[i+3:]
	}
	rest := u
	if i := bytes.IndexAny(u, "/?#"); i >= 0 {
		host, rest = u[:i], u[i:]
	} else {
		host, rest = u, nil
	}
	if i := bytes.IndexByte(rest, '?'); i >= 0 {
		query = rest[i+1:]
		if j := bytes.IndexByte(query, '#'); j >= 0 {
			query = query[:j]
		}
	}
	return host, query
}

// queryValue appends to dst the decoded value of the first argument of
// the URL query string q whose decoded name is key ('+' is a space, %XX a
// byte, a malformed escape is kept as it is), and reports whether there
// is one.
func queryValue(dst, q []byte, key string) ([]byte, bool) {
	for len(q) > 0 {
		var arg []byte
		arg, q, _ = bytes.Cut(q, []byte("&"))
		name, val, _ := bytes.Cut(arg, []byte("="))
		start := len(dst)
		dst = unescapeQuery(dst, name)
		if string(dst[start:]) == key {
			return unescapeQuery(dst[:start], val), true
		}
		dst = dst[:start]
	}
	return dst, false
}

// unescapeQuery appends s decoded as a query component.
func unescapeQuery(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func searchEngine(host []byte) string {
	for _, e := range [...]string{"google", "bing", "yahoo", "duckduckgo", "baidu", "yandex", "naver", "ecosia"} {
		if bytes.Contains(host, []byte(e)) {
			return e
		}
	}
	return ""
}

// device tells mobile, tablet or desktop from the User-Agent: iPad, a
// "Tablet" token, or Android without "Mobi" (Android tablets and Kindles
// leave it out) is a tablet; "Mobi" (Mobile, Mobi) or Opera Mini is a
// phone; anything else is a desktop.
func device(ua []byte) string {
	switch {
	case bytes.Contains(ua, []byte("Mobi")) || bytes.Contains(ua, []byte("Opera Mini")):
		if bytes.Contains(ua, []byte("iPad")) || bytes.Contains(ua, []byte("Tablet")) {
			return "tablet"
		}
		return "mobile"
	case bytes.Contains(ua, []byte("iPad")) || bytes.Contains(ua, []byte("Tablet")) || bytes.Contains(ua, []byte("Android")):
		return "tablet"
	}
	return "desktop"
}
