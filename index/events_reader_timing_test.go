package index

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// genEvents returns n events in format "csv" or "ndjson", shaped like the
// shared data: numeric user ids, SKU-like item ids, mostly views, a rating
// value or a basket on some.
func genEvents(format string, n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{"view", "view", "view", "click", "cart", "purchase", "rating"}
	var b []byte
	if format == "csv" {
		b = append(b, "user_id,item_id,event,ts,value,basket\n"...)
	}
	for i := 0; i < n; i++ {
		user := strconv.Itoa(1 + rng.IntN(100000))
		item := strconv.Itoa(10000+rng.IntN(90000)) + string(rune('A'+rng.IntN(3)))
		typ := types[rng.IntN(len(types))]
		ts := strconv.Itoa(1700000000 + i)
		value, basket := "", ""
		switch typ {
		case "rating":
			value = strconv.Itoa(1 + rng.IntN(5))
		case "purchase":
			value = strconv.Itoa(1 + rng.IntN(3))
			basket = "o" + strconv.Itoa(rng.IntN(1000000))
		}
		if format == "csv" {
			b = append(b, user+","+item+","+typ+","+ts+","+value+","+basket+"\n"...)
			continue
		}
		b = append(b, `{"user_id":"`+user+`","item_id":"`+item+`","event":"`+typ+`","ts":`+ts...)
		if value != "" {
			b = append(b, `,"value":`+value...)
		}
		if basket != "" {
			b = append(b, `,"basket":"`+basket+`"`...)
		}
		b = append(b, "}\n"...)
	}
	return b
}

var benchSink int

// benchEvents reads the generated input once per iteration; b.N counts
// events, so ns/op is ns per event.
func benchEvents(b *testing.B, format string) {
	const n = 100000
	in := genEvents(format, n)
	b.ReportAllocs()
	b.SetBytes(int64(len(in) / n))
	b.ResetTimer()
	var ev model.Event
	var r *EventReader
	br := bytes.NewReader(in)
	for i := 0; i < b.N; i++ {
		if i%n == 0 {
			br.Reset(in)
			var err error
			if r, err = NewEventReader(br, "bench"); err != nil {
				b.Fatal(err)
			}
		}
		if err := r.Next(&ev); err != nil {
			b.Fatal(err)
		}
		benchSink += len(ev.User) + len(ev.Item)
	}
}

func BenchmarkEventReaderCSV(b *testing.B)    { benchEvents(b, "csv") }
func BenchmarkEventReaderNDJSON(b *testing.B) { benchEvents(b, "ndjson") }
