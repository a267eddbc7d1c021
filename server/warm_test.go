package server

import (
	"context"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/engine"
)

// TestReadyzWarming: while the engine warms (a HoldReady held, as edgerec
// serve holds one from before it listens until engine.Warm returns)
// /readyz answers 503 "warming", /healthz 200, and requests are answered;
// /readyz is 200 once the hold is released.
func TestReadyzWarming(t *testing.T) {
	ts := newTestStack(t, engine.Options{CacheBytes: 16 << 20}, Options{})
	release := ts.e.HoldReady()
	ready := func(want int, wantBody string) {
		t.Helper()
		code, body := do(t, ts.c, "GET", "/readyz", "", "")
		if code != want || !strings.Contains(string(body), wantBody) {
			t.Fatalf("/readyz: %d %s; want %d and %s", code, body, want, wantBody)
		}
	}
	ready(503, `"code":"warming"`)
	if code, body := do(t, ts.c, "GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz while warming: %d %s; want 200", code, body)
	}
	if l := getList(t, ts.c, "/v1/popular?k=3"); len(l.Items) != 3 {
		t.Fatalf("popular while warming: %+v", l)
	}
	st, err := ts.e.Warm(context.Background(), engine.WarmOptions{})
	if err != nil || !st.Complete || st.Items == 0 {
		t.Fatalf("Warm: %+v, %v", st, err)
	}
	ready(503, `"code":"warming"`)
	release()
	ready(200, `"status":"ready"`)
}
