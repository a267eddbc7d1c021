package index

import (
	"bytes"
	"errors"
	"io"
	"math"
	"testing"
	"unicode/utf8"

	"github.com/edgerec/edgerec/model"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; crashers found by fuzzing
// stay there as regression cases.

func FuzzItemReader(f *testing.F) {
	f.Add([]byte("item_id,title,category,price\n1,Toy Story (1995),Animation|Children's|Comedy,\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewItemReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			if errors.Is(err, ErrBadLine) || errors.Is(err, ErrBadFormat) {
				return
			}
			t.Fatalf("unexpected error: %v", err)
		}
		for calls := 0; ; calls++ {
			if calls > len(data)+1 {
				t.Fatalf("more than %d calls to Next", calls)
			}
			var it model.Item
			err := r.Next(&it)
			if err == io.EOF {
				return
			}
			if errors.Is(err, ErrBadLine) {
				continue
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(it.ID) == 0 || len(it.ID) > MaxIDLen || !utf8.ValidString(it.ID) {
				t.Fatalf("line %d: bad id %q", r.Line(), it.ID)
			}
			if it.HasPrice && (it.Price < 0 || math.IsNaN(it.Price) || math.IsInf(it.Price, 0)) {
				t.Fatalf("line %d: bad price %v", r.Line(), it.Price)
			}
			for _, c := range it.Categories {
				if c == "" || !utf8.ValidString(c) {
					t.Fatalf("line %d: bad category %q", r.Line(), c)
				}
			}
			if !utf8.ValidString(it.Title) || !utf8.ValidString(it.Brand) {
				t.Fatalf("line %d: invalid UTF-8 in %q or %q", r.Line(), it.Title, it.Brand)
			}
			for _, a := range it.Attrs {
				if a.Key == "" || a.Value == "" || !utf8.ValidString(a.Key) || !utf8.ValidString(a.Value) {
					t.Fatalf("line %d: bad attr %+v", r.Line(), a)
				}
			}
		}
	})
}
