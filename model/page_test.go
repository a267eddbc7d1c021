package model

import "testing"

func TestPagePath(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := string(PagePath([]byte(in))); got != want {
			t.Errorf("PagePath(%q) = %q, want %q", in, got, want)
		}
	}
	f("/pricing", "/pricing")
	f("/pricing/", "/pricing")
	f("https://example.jp/pricing?utm=x#top", "/pricing")
	f("https://example.jp", "/")
	f("/", "/")
	f("/go?to=https://evil.example/x", "/go")
	f("/search#q=http://a/b", "/search")
	f("//cdn.example/x", "//cdn.example/x")
	f("http://a.example/b/c//", "/b/c")
}
