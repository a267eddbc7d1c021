package index

import (
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/internal/testenv"
	"github.com/edgerec/edgerec/model"
)

func TestItemReaderCSV(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewItemReader(strings.NewReader(in), "items.csv")
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	f("item_id,title,category,price\n1,Toy Story (1995),Animation|Children's|Comedy,\n12,\"Usual Suspects, The (1995)\",Crime|Thriller,9.99\n",
		`2 "1" "Toy Story (1995)" ["Animation" "Children's" "Comedy"]`,
		`3 "12" "Usual Suspects, The (1995)" ["Crime" "Thriller"] price=9.99`)
	// Aliases, any order, attrs in column order, empty values skipped,
	// categories trimmed with empties dropped.
	f("Color,stock,ID,categories,brand,size,Title\nred,5,a1, x || y |,Acme,,Hat\n,,a2,,,L,\n",
		`2 "a1" "Hat" ["x" "y"] stock=5 brand="Acme" attrs=[{Color red}]`,
		`3 "a2" "" [] attrs=[{size L}]`)
	f("id,stock\na,-3\nb,5.0\n", `2 "a" "" [] stock=-3`, `3 "b" "" [] stock=5`)
	// Bad UTF-8 outside ids is replaced.
	f("id,title,brand\na,T\xffx,B\xc3\n", "2 \"a\" \"T\ufffdx\" [] brand=\"B\ufffd\"")
	// Columns without a name are ignored; header names are made valid UTF-8.
	f("id,,\xd3,\n0,x,y,\n", "2 \"0\" \"\" [] attrs=[{\ufffd y}]")
	f("id\n\n")
	f("")

	const h = "item_id,title,price,stock\n"
	f(h+",t,,\n1,t,,\n", `items.csv:2: empty item_id`, `3 "1" "t" []`)
	f(h+"\xff,t,,\n", `items.csv:2: invalid UTF-8 in item_id`)
	f(h+strings.Repeat("1", 257)+",t,,\n", `items.csv:2: item_id longer than 256 bytes`)
	f(h+"1,t,x,\n", `items.csv:2: bad price "x"`)
	f(h+"1,t,-1,\n", `items.csv:2: bad price "-1"`)
	f(h+"1,t,NaN,\n", `items.csv:2: bad price "NaN"`)
	f(h+"1,t,,1.5\n", `items.csv:2: bad stock "1.5"`)
	f(h+"1,t,,x\n", `items.csv:2: bad stock "x"`)
	f(h+"1,t\n", `items.csv:2: wrong number of fields: 2, want 4`)
}

func TestItemReaderNDJSON(t *testing.T) {
	f := func(in string, want ...string) {
		t.Helper()
		r, err := NewItemReader(strings.NewReader(in), "items.ndjson")
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("input %q\ngot\n\t%s\nwant\n\t%s", in, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
		}
	}
	f(`{"item_id":"1","title":"Toy Story (1995)","category":"Animation|Children's|Comedy","price":null}`+"\n\n"+
		`{"id":12,"categories":["Crime"," ","Thriller"],"price":"9.99","stock":3,"brand":"B","color":"red","new":true,"rank":1.5,"tags":["x"],"dims":{},"none":null,"empty":""}`,
		`1 "1" "Toy Story (1995)" ["Animation" "Children's" "Comedy"]`,
		`3 "12" "" ["Crime" "Thriller"] price=9.99 stock=3 brand="B" attrs=[{color red} {new true} {rank 1.5}]`)
	f(`{"item_id":"a","stock":"7"}`, `1 "a" "" [] stock=7`)

	f(`{"title":"t"}`, `items.ndjson:1: missing item_id`)
	f(`{"item_id":""}`, `items.ndjson:1: empty item_id`)
	f(`{"item_id":"a","title":1}`, `items.ndjson:1: bad title: want a string, got number`)
	f(`{"item_id":"a","brand":[]}`, `items.ndjson:1: bad brand: want a string, got array`)
	f(`{"item_id":"a","category":[1]}`, `items.ndjson:1: bad category: want a string, got number`)
	f(`{"item_id":"a","category":{}}`, `items.ndjson:1: bad category: want a string or an array of strings, got object`)
	f(`{"item_id":"a","price":-2}`, `items.ndjson:1: bad price "-2"`)
	f(`{"item_id":"a","price":"x"}`, `items.ndjson:1: bad price "x"`)
	f(`{"item_id":"a","stock":1.5}`, `items.ndjson:1: bad stock "1.5"`)
	f(`{"item_id":"a","stock":1e300}`, `items.ndjson:1: bad stock "1e300"`)
	f("{\"item_id\":\"a\"\n{\"item_id\":\"b\"}",
		`items.ndjson:1: malformed JSON: cannot parse JSON: cannot parse object: unexpected end of object; unparsed tail: ""`,
		`2 "b" "" []`)
}

// readItems reads all of r, rendering items and bad lines as strings.
func readItems(t testing.TB, r *ItemReader) []string {
	t.Helper()
	var got []string
	for {
		var it model.Item
		err := r.Next(&it)
		if err == io.EOF {
			return got
		}
		var le *LineError
		if errors.As(err, &le) {
			if le.Line != r.Line() {
				t.Fatalf("LineError line %d, Line() %d", le.Line, r.Line())
			}
			got = append(got, err.Error())
			continue
		}
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		got = append(got, formatItem(r.Line(), &it))
	}
}

func formatItem(line int, it *model.Item) string {
	cats := make([]string, len(it.Categories))
	for i, c := range it.Categories {
		cats[i] = strconv.Quote(c)
	}
	s := fmt.Sprintf("%d %q %q [%s]", line, it.ID, it.Title, strings.Join(cats, " "))
	if it.HasPrice {
		s += " price=" + strconv.FormatFloat(it.Price, 'g', -1, 64)
	}
	if it.HasStock {
		s += " stock=" + strconv.FormatInt(it.Stock, 10)
	}
	if it.Brand != "" {
		s += fmt.Sprintf(" brand=%q", it.Brand)
	}
	if len(it.Attrs) > 0 {
		s += fmt.Sprintf(" attrs=%v", it.Attrs)
	}
	return s
}

func TestItemReaderFixtures(t *testing.T) {
	read := func(name string) []string {
		t.Helper()
		rc, err := OpenInput(filepath.Join("testdata", "input", name))
		if err != nil {
			t.Fatalf("OpenInput: %v", err)
		}
		defer rc.Close()
		r, err := NewItemReader(rc, name)
		if err != nil {
			t.Fatalf("NewItemReader: %v", err)
		}
		got := readItems(t, r)
		for i, s := range got {
			got[i] = s[strings.IndexByte(s, ' ')+1:] // drop line numbers
		}
		return got
	}
	csvItems := read("items.csv")
	jsonItems := read("items.ndjson")
	if len(csvItems) != 4 {
		t.Fatalf("items.csv: got %d items, want 4:\n%s", len(csvItems), strings.Join(csvItems, "\n"))
	}
	if !reflect.DeepEqual(csvItems, jsonItems) {
		t.Fatalf("items.csv and items.ndjson differ:\n%s\n---\n%s", strings.Join(csvItems, "\n"), strings.Join(jsonItems, "\n"))
	}
}

// TestItemReaderShop reads the test shop's gzipped catalog (quoted
// titles with commas and double quotes, several categories, price, stock,
// brand) and compares every item with the row as encoding/csv reads it.
func TestItemReaderShop(t *testing.T) {
	t.Parallel()
	_, items := testenv.Shop(t)
	rows := gzipCSV(t, items)
	if want := []string{"item_id", "title", "category", "price", "stock", "brand"}; !reflect.DeepEqual(rows[0], want) {
		t.Fatalf("header %q; want %q", rows[0], want)
	}
	rc, err := OpenInput(items)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := NewItemReader(rc, items)
	if err != nil {
		t.Fatal(err)
	}
	var quoted, multi int
	for i := 1; ; i++ {
		var it model.Item
		err := r.Next(&it)
		if err == io.EOF {
			if i != len(rows) {
				t.Fatalf("read %d items; the file has %d rows", i-1, len(rows)-1)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(rows) {
			t.Fatalf("more items than the file's %d rows", len(rows)-1)
		}
		row := rows[i]
		price, _ := strconv.ParseFloat(row[3], 64)
		stock, _ := strconv.ParseInt(row[4], 10, 64)
		want := model.Item{ID: row[0], Title: row[1], Categories: strings.Split(row[2], "|"),
			Price: price, HasPrice: true, Stock: stock, HasStock: true, Brand: row[5]}
		if !reflect.DeepEqual(it, want) {
			t.Fatalf("row %d: got %+v, want %+v", i, it, want)
		}
		if strings.ContainsAny(it.Title, ",\"") {
			quoted++
		}
		if len(it.Categories) > 1 {
			multi++
		}
	}
	if quoted == 0 || multi == 0 {
		t.Fatalf("%d quoted titles, %d items in several categories: the test shows little", quoted, multi)
	}
}

// gzipCSV reads a gzipped CSV file with the standard library alone.
func gzipCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(zr).ReadAll()
	if err != nil || len(rows) < 2 {
		t.Fatalf("%s: %d rows, %v", path, len(rows), err)
	}
	return rows
}
