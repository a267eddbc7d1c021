package server

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestCheckQuery: known names pass, utm_* on landing-page endpoints, and
// the 400 names each unknown parameter once, quoted.
func TestCheckQuery(t *testing.T) {
	f := func(ep int, query, want string) {
		t.Helper()
		var args fasthttp.Args
		args.Parse(query)
		err := checkQuery(&args, &endpoints[ep])
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != want {
			t.Fatalf("%s?%s: %q, want %q", endpoints[ep].path, query, got, want)
		}
	}
	f(epSimilar, "", "")
	f(epSimilar, "k=10&category=a&price_min=1&price_max=2&exclude=x&user=u&visitor=v&cart=c", "")
	f(epPage, "page=p&placements=home&utm_source=s&utm_id=7&utm_source_platform=x&item=i", "")
	f(epDecide, "page=p&utm_=x", `unknown query parameter "utm_"; /v1/decide takes page, visitor, user, q, ref, utm_source, utm_medium, utm_campaign, utm_term, utm_content and utm_*`)
	f(epPopular, "k=1&cart=a&cart=b&Limit=3", `unknown query parameters "cart", "Limit"; /v1/popular takes k, category, price_min, price_max, exclude, user, visitor`)
	f(epEvents, "%E5%96%B6=1&=2", `unknown query parameters "営", ""; /v1/events takes none`)
	f(epScript, "v=abc&K=1", `unknown query parameter "K"; /v1/edgerec.js takes v`)
	f(epHealthz, "anything=1", "") // outside /v1: ignored
}
