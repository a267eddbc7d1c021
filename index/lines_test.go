package index

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"testing"
)

// TestCSVScannerMatchesEncodingCSV checks the hand-rolled splitter against
// encoding/csv on tricky input; FuzzCSVScanner does the same on random input.
func TestCSVScannerMatchesEncodingCSV(t *testing.T) {
	for _, in := range []string{
		"a,b,c\n",
		"a,b,c",
		"\n\na\r\n\r\nb\n",
		`"a""b",c` + "\n",
		"\"a\nb\",\"c\r\nd\"\ne\n",
		"\"\"\n\"\",\"\"\n",
		",,\n,\n",
		"a,\"b\"\r\n",
		"\"\n\n\"\n",
		" \"a\"\n",
		"a\"b\n",
		"\"a\"b\n",
		"\"a\n",
		"a\rb,c\r\r\n",
	} {
		checkCSVScanner(t, []byte(in))
	}
}

// checkCSVScanner compares the records of csvScanner and encoding/csv on in,
// up to the first error, which both must see on the same line.
func checkCSVScanner(t *testing.T, in []byte) {
	t.Helper()
	cr := csv.NewReader(bytes.NewReader(in))
	cr.FieldsPerRecord = -1
	lr := newLineReader(bytes.NewReader(in), "x")
	s := csvScanner{lr: &lr}
	for n := 1; ; n++ {
		want, wantErr := cr.Read()
		got, gotErr := s.next()
		if wantErr != nil || gotErr != nil {
			if (wantErr == io.EOF) != (gotErr == io.EOF) || (wantErr == nil) != (gotErr == nil) {
				t.Fatalf("input %q record %d: got error %v, encoding/csv %v", in, n, gotErr, wantErr)
			}
			var pe *csv.ParseError
			var le *LineError
			if errors.As(wantErr, &pe) && errors.As(gotErr, &le) && pe.StartLine != le.Line {
				t.Fatalf("input %q record %d: error on line %d, encoding/csv on line %d", in, n, le.Line, pe.StartLine)
			}
			return
		}
		if len(got) != len(want) {
			t.Fatalf("input %q record %d: got %q, encoding/csv %q", in, n, got, want)
		}
		for i := range got {
			if string(got[i]) != want[i] {
				t.Fatalf("input %q record %d: got %q, encoding/csv %q", in, n, got, want)
			}
		}
		if line, _ := cr.FieldPos(0); line != s.start {
			t.Fatalf("input %q record %d: line %d, encoding/csv %d", in, n, s.start, line)
		}
	}
}
