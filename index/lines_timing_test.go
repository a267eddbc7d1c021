package index

import (
	"bytes"
	"encoding/csv"
	"io"
	"testing"
)

// BenchmarkCSVScanner splits records only, to compare with BenchmarkStdlibCSV.
func BenchmarkCSVScanner(b *testing.B) {
	const n = 100000
	in := genEvents("csv", n)
	b.ReportAllocs()
	b.SetBytes(int64(len(in) / n))
	b.ResetTimer()
	var s csvScanner
	var lr lineReader
	br := bytes.NewReader(in)
	for i := 0; i < b.N; i++ {
		if i%n == 0 {
			br.Reset(in)
			lr = newLineReader(br, "bench")
			s = csvScanner{lr: &lr}
			if _, err := s.next(); err != nil {
				b.Fatal(err)
			}
		}
		rec, err := s.next()
		if err != nil {
			b.Fatal(err)
		}
		benchSink += len(rec[0]) + len(rec[1])
	}
}

// BenchmarkStdlibCSV is the baseline that justifies csvScanner: only
// splitting records with encoding/csv (ReuseRecord) costs more than the
// whole EventReader, and allocates once per record.
func BenchmarkStdlibCSV(b *testing.B) {
	const n = 100000
	in := genEvents("csv", n)
	b.ReportAllocs()
	b.SetBytes(int64(len(in) / n))
	b.ResetTimer()
	var cr *csv.Reader
	br := bytes.NewReader(in)
	for i := 0; i < b.N; i++ {
		if i%n == 0 {
			br.Reset(in)
			cr = csv.NewReader(br)
			cr.ReuseRecord = true
			cr.FieldsPerRecord = -1
			if _, err := cr.Read(); err != nil {
				b.Fatal(err)
			}
		}
		rec, err := cr.Read()
		if err == io.EOF {
			b.Fatal("EOF")
		}
		if err != nil {
			b.Fatal(err)
		}
		benchSink += len(rec[0]) + len(rec[1])
	}
}
