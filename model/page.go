package model

import "bytes"

// PagePath reduces a page URL to the path a profile counts it under: no
// scheme, host, query or fragment, no trailing slash but for the root.
// The result aliases u.
func PagePath(u []byte) []byte {
	if i := bytes.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	// A scheme only counts before the path starts: "/go?to=https://x/y"
	// is the path /go.
	if i := bytes.Index(u, []byte("://")); i >= 0 && bytes.IndexByte(u[:i], '/') < 0 {
		u = u[i+3:]
		if j := bytes.IndexByte(u, '/'); j >= 0 {
			u = u[j:]
		} else {
			u = []byte("/")
		}
	}
	for len(u) > 1 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}
