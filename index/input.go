package index

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/valyala/fastjson"
)

// Input limits. They bound the memory one reader holds whatever the input.
const (
	// MaxLineLen is the longest input line (with its line end) the readers
	// accept; for CSV it also bounds a record spanning several lines. A longer
	// line is reported as a *LineError and skipped.
	MaxLineLen = 1 << 20

	// MaxIDLen is the longest user, item or basket id in bytes.
	MaxIDLen = 256

	// readBufSize is the bufio buffer of a reader. Lines that fit are
	// returned without copying.
	readBufSize = 64 << 10

	// maxZstdWindow bounds the window a zstd frame may ask for, so a hostile
	// stream cannot make the decoder allocate 512 MiB (the library default).
	// 128 MiB still reads files written with `zstd --long` (window 2^27).
	maxZstdWindow = 128 << 20
)

var (
	// ErrBadLine is wrapped by every *LineError.
	ErrBadLine = errors.New("index: bad input line")

	// ErrBadFormat is wrapped by the errors NewEventReader and NewItemReader
	// return for input they cannot read at all: a header without a required
	// column, a duplicated column, a JSON array.
	ErrBadFormat = errors.New("index: bad input format")
)

// LineError is one bad input line. Readers return it from Next and stay
// usable: the caller counts it and calls Next again.
type LineError struct {
	File string
	// Line is 1-based. For a CSV record spanning several lines it is the
	// line the record starts on.
	Line   int
	Reason string
}

// Error returns "file:line: reason".
func (e *LineError) Error() string {
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Reason
}

// Unwrap returns ErrBadLine.
func (e *LineError) Unwrap() error { return ErrBadLine }

// Compression is the compression of an input stream.
type Compression uint8

// Compressions DetectCompression knows.
const (
	CompressionNone Compression = iota
	CompressionGzip
	CompressionZstd
)

// String returns "none", "gzip" or "zstd".
func (c Compression) String() string {
	switch c {
	case CompressionGzip:
		return "gzip"
	case CompressionZstd:
		return "zstd"
	}
	return "none"
}

// DetectCompression returns the compression whose magic bytes start b. It
// looks at no more than the first 4 bytes; shorter input is CompressionNone.
func DetectCompression(b []byte) Compression {
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		return CompressionGzip
	}
	if len(b) >= 4 {
		// A zstd frame, or a skippable frame (magic 0x184D2A50..5F, little endian).
		if b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd {
			return CompressionZstd
		}
		if b[0]&0xf0 == 0x50 && b[1] == 0x2a && b[2] == 0x4d && b[3] == 0x18 {
			return CompressionZstd
		}
	}
	return CompressionNone
}

// OpenInput opens the file at path and returns a reader of its decompressed
// bytes: gzip and zstd are recognised by their magic bytes (not by the file
// name), anything else is read as is. Close releases the decoder and closes
// the file.
func OpenInput(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot open input: %w", err)
	}
	rc, err := newInput(f, f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cannot read %q: %w", path, err)
	}
	return rc, nil
}

// NewDecompressReader returns a reader of the decompressed bytes of r, like
// OpenInput does for a file. Its Close releases the decoder; it does not
// close r, which stays owned by the caller.
func NewDecompressReader(r io.Reader) (io.ReadCloser, error) {
	return newInput(r, nil)
}

func newInput(r io.Reader, c io.Closer) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, readBufSize)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("cannot read magic bytes: %w", err)
	}
	in := &input{r: br, c: c}
	switch DetectCompression(magic) {
	case CompressionGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("cannot read gzip header: %w", err)
		}
		in.r, in.gz = zr, zr
	case CompressionZstd:
		zd, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("cannot start zstd decoder: %w", err)
		}
		in.r, in.zd = zd, zd
	}
	return in, nil
}

// input is the io.ReadCloser of OpenInput and NewDecompressReader.
type input struct {
	r  io.Reader
	gz *gzip.Reader
	zd *zstd.Decoder
	c  io.Closer // the file; nil for NewDecompressReader
}

func (in *input) Read(p []byte) (int, error) { return in.r.Read(p) }

// Close releases the decoder and closes the file. Calling it twice is safe.
func (in *input) Close() error {
	if in.gz != nil {
		_ = in.gz.Close()
		in.gz = nil
	}
	if in.zd != nil {
		in.zd.Close()
		in.zd = nil
	}
	if in.c != nil {
		c := in.c
		in.c = nil
		if err := c.Close(); err != nil {
			return fmt.Errorf("cannot close input: %w", err)
		}
	}
	return nil
}

// Field values, shared by EventReader and ItemReader (text also by header):
// id checks, numbers, JSON ids and scalars, valid UTF-8 text, and values
// quoted for error reasons.

// jsonID appends to dst the id under the first of keys found in o and checks
// it.
func jsonID(dst []byte, o *fastjson.Object, keys ...string) ([]byte, string) {
	var v *fastjson.Value
	for _, k := range keys {
		if v = o.Get(k); v != nil {
			break
		}
	}
	if v == nil || v.Type() == fastjson.TypeNull {
		return dst, "missing " + keys[0]
	}
	dst, reason := jsonScalar(dst, v, keys[0])
	if reason != "" {
		return dst, reason
	}
	return dst, checkID(keys[0], dst)
}

// jsonScalar appends to dst the text of a string or number.
func jsonScalar(dst []byte, v *fastjson.Value, name string) ([]byte, string) {
	switch v.Type() {
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		return append(dst, b...), ""
	case fastjson.TypeNumber:
		return v.MarshalTo(dst), ""
	}
	return dst, "bad " + name + ": want a string or a number, got " + v.Type().String()
}

// jsonNumber returns a JSON number or numeric string. null and "" are no
// number.
func jsonNumber(v *fastjson.Value, name string) (float64, bool, string) {
	switch v.Type() {
	case fastjson.TypeNull:
		return 0, false, ""
	case fastjson.TypeNumber:
		// fastjson also takes NaN and Inf as numbers.
		f, err := v.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false, "bad " + name + " " + quote(v.MarshalTo(nil))
		}
		return f, true, ""
	case fastjson.TypeString:
		b, _ := v.StringBytes()
		b = bytes.TrimSpace(b)
		if len(b) == 0 {
			return 0, false, ""
		}
		f, ok := parseFloat(b)
		if !ok {
			return 0, false, "bad " + name + " " + quote(b)
		}
		return f, true, ""
	}
	return 0, false, "bad " + name + ": want a number, got " + v.Type().String()
}

// checkID returns why b is not a valid id, or "".
func checkID(name string, b []byte) string {
	if len(b) == 0 {
		return "empty " + name
	}
	if len(b) > MaxIDLen {
		return name + " longer than " + strconv.Itoa(MaxIDLen) + " bytes"
	}
	if !utf8.Valid(b) {
		return "invalid UTF-8 in " + name
	}
	return ""
}

// parseFloat parses a finite number.
func parseFloat(b []byte) (float64, bool) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// quote returns b in Go quotes, cut to 64 bytes, for error messages.
func quote(b []byte) string {
	const maxQuoted = 64
	if len(b) > maxQuoted {
		return strconv.Quote(string(b[:maxQuoted])) + "…"
	}
	return strconv.Quote(string(b))
}

// text returns b as a fresh string, with invalid UTF-8 replaced by U+FFFD.
func text(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
