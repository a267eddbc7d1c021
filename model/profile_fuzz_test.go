package model

import (
	"bytes"
	"testing"
)

// FuzzProfileDecode: stored bytes of any shape decode or fail cleanly,
// and whatever decodes re-encodes to bytes that decode to the same.
func FuzzProfileDecode(f *testing.F) {
	var p Profile
	p.SetAttr([]byte("company"), AttrString, []byte("ACME"), 0)
	p.SetAttr([]byte("employees"), AttrNumber, nil, 250)
	p.Add(EventPageview, 1_700_000_000, 0, []byte("/pricing"), nil)
	p.Add(EventPurchase, 1_699_000_000, 12, nil, []byte("tools"))
	p.Compact(1_700_000_000, 90*86400)
	f.Add(p.Append(nil))
	f.Add([]byte{})
	f.Add([]byte{profileVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Profile
		if p.Decode(b) != nil {
			return
		}
		enc := p.Append(nil)
		var q Profile
		if err := q.Decode(enc); err != nil {
			t.Fatalf("re-encoded profile does not decode: %v", err)
		}
		if !bytes.Equal(q.Append(nil), enc) {
			t.Fatal("decode of an encoding changed it")
		}
		_ = p.Count(DimPage, "/pricing", 86400, 1_700_000_000)
		p.Add(EventView, 1_700_000_100, 1, nil, []byte("c"))
		p.Compact(1_700_000_100, 86400)
	})
}
