package index

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/model"
	"github.com/klauspost/compress/zstd"
)

func TestLineError(t *testing.T) {
	err := error(&LineError{File: "events.csv", Line: 17, Reason: `unknown event type "buy"`})
	if got, want := err.Error(), `events.csv:17: unknown event type "buy"`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("cannot build: %w", err), ErrBadLine) {
		t.Fatalf("LineError does not wrap ErrBadLine")
	}
}

func TestDetectCompression(t *testing.T) {
	f := func(b string, want Compression) {
		t.Helper()
		if got := DetectCompression([]byte(b)); got != want {
			t.Fatalf("DetectCompression(%q) = %s, want %s", b, got, want)
		}
	}
	f("", CompressionNone)
	f("\x1f", CompressionNone)
	f("\x1f\x8b", CompressionGzip)
	f("\x1f\x8b\x08\x00", CompressionGzip)
	f("\x28\xb5\x2f", CompressionNone)
	f("\x28\xb5\x2f\xfd", CompressionZstd)
	f("\x5a\x2a\x4d\x18", CompressionZstd)
	f("user_id,item_id", CompressionNone)
	f("{\"user_id\"", CompressionNone)
}

func TestOpenInput(t *testing.T) {
	const text = "user_id,item_id,event\nu,i,view\n"
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	gz := func(s string) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return buf.Bytes()
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	zst := enc.EncodeAll([]byte(text), nil)
	_ = enc.Close()

	f := func(path, want string) {
		t.Helper()
		rc, err := OpenInput(path)
		if err != nil {
			t.Fatalf("OpenInput(%q): %v", path, err)
		}
		got, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %q: %v", path, err)
		}
		if string(got) != want {
			t.Fatalf("%q: got %q, want %q", path, got, want)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := rc.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	}
	// The names lie: the magic bytes decide.
	f(write("plain.gz", []byte(text)), text)
	f(write("gzip.csv", gz(text)), text)
	f(write("zstd.txt", zst), text)
	// Concatenated gzip members are one stream.
	f(write("multi.gz", append(gz("ab"), gz("cd")...)), "abcd")
	f(write("empty", nil), "")
	f(write("short", []byte("\x1f")), "\x1f")

	if _, err := OpenInput(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
	path := write("bad.gz", []byte("\x1f\x8b\x08"))
	if _, err := OpenInput(path); err == nil || !strings.Contains(err.Error(), "cannot read gzip header") {
		t.Fatalf("got %v, want a gzip header error", err)
	}

	// A corrupt stream surfaces as a read error from the reader.
	bad := gz(strings.Repeat(text, 100))
	bad[len(bad)-5] ^= 0xff // the length in the trailer
	rc, err := OpenInput(write("corrupt.gz", bad))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	r, err := NewEventReader(rc, "corrupt.gz")
	if err != nil {
		t.Fatal(err)
	}
	var ev model.Event
	for err == nil || errors.Is(err, ErrBadLine) { // the repeated header lines are bad lines
		err = r.Next(&ev)
	}
	if err == io.EOF || errors.Is(err, ErrBadLine) {
		t.Fatalf("got %v, want a read error", err)
	}

	// NewDecompressReader on a stream, leaving it open.
	for _, b := range [][]byte{[]byte(text), gz(text), zst} {
		rc, err := NewDecompressReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || string(got) != text {
			t.Fatalf("got %q, %v", got, err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
