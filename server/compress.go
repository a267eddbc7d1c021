package server

import (
	"encoding/binary"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/valyala/fasthttp"
)

// Compressed answers without compressing per request.
//
// A cached answer is its tail, everything after the per-request rec_id
// head. The first client that accepts gzip gets the tail deflated once,
// and the deflate stream is cached beside it; every later one gets
//
//	gzip header ‖ stored deflate block (the head, not final) ‖ deflate(tail) ‖ CRC-32(head ‖ tail) ‖ size
//
// which is one valid gzip member: the tail's stream starts on the byte
// boundary where the stored block ends, and only the CRC over the ~1 KB
// answer is computed per request. Answers that are not cached (personal
// ones, /v1/page) go uncompressed: deflating a few KB per request would
// cost more server time than the whole answer does (DESIGN.md).

// bodyEntry layout in the cache: tail ‖ deflate(tail) ‖ uint32 LE, the
// tail's length with entryDeflated set once compression was tried (an
// empty deflate part then means it did not pay).
const entryDeflated = 1 << 31

func makeEntry(tail, def []byte, tried bool) []byte {
	v := make([]byte, 0, len(tail)+len(def)+4)
	v = append(append(v, tail...), def...)
	n := uint32(len(tail))
	if tried {
		n |= entryDeflated
	}
	return binary.LittleEndian.AppendUint32(v, n)
}

// splitEntry returns the parts of a cached entry; both alias v. ok is
// false for a value that is not an entry (a 64-bit key collision with
// another family of the cache): the caller treats it as a miss.
func splitEntry(v []byte) (tail, def []byte, tried, ok bool) {
	if len(v) < 4 {
		return nil, nil, false, false
	}
	n := binary.LittleEndian.Uint32(v[len(v)-4:])
	tried = n&entryDeflated != 0
	n &^= entryDeflated
	if int(n) > len(v)-4 {
		return nil, nil, false, false
	}
	return v[:n], v[n : len(v)-4], tried, true
}

// compressible reports whether a cached answer with this tail goes out
// gzip-compressed to clients that accept it: it stands alone (not inside
// /v1/page) and is at least Options.GzipMinBytes.
func (s *Server) compressible(rs *reqState, tail []byte) bool {
	return !rs.inner && s.o.GzipMinBytes > 0 && len(tail) >= s.o.GzipMinBytes
}

// wantGzip reports whether this answer goes out gzip-compressed: it is
// compressible and the client accepts gzip.
func (s *Server) wantGzip(ctx *fasthttp.RequestCtx, rs *reqState, tail []byte) bool {
	return s.compressible(rs, tail) && ctx.Request.Header.HasAcceptEncoding("gzip")
}

// cacheBody stores tail (and def, its deflate stream, when tried) under
// key.
func (s *Server) cacheBody(key uint64, tail, def []byte, tried bool) {
	e := makeEntry(tail, def, tried)
	s.cache.Set(key, e, int64(len(e)+64))
}

var deflaters = sync.Pool{New: func() any {
	w, err := flate.NewWriter(nil, flate.BestCompression)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return w
}}

// sliceWriter appends what it is written to its slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// deflate returns src compressed as a final deflate stream, or nil when
// that saves less than an eighth (small or incompressible answers).
func deflate(src []byte) []byte {
	fw := deflaters.Get().(*flate.Writer)
	defer deflaters.Put(fw)
	out := sliceWriter{b: make([]byte, 0, len(src)/2)}
	fw.Reset(&out)
	if _, err := fw.Write(src); err != nil {
		return nil
	}
	if err := fw.Close(); err != nil {
		return nil
	}
	if len(out.b) > len(src)-len(src)/8 {
		return nil
	}
	return out.b
}

// gzipHeader: ID1 ID2, CM deflate, no flags, no mtime, XFL 0, OS unknown.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// writeGzip writes head ‖ tail as one gzip member, def being the deflate
// stream of tail. head must be shorter than 64 KiB.
func writeGzip(ctx *fasthttp.RequestCtx, head, tail, def []byte) {
	if len(head) > 0xffff {
		panic("BUG: a gzip head longer than a stored block")
	}
	ctx.Response.Header.Set(fasthttp.HeaderContentEncoding, "gzip")
	var b [8]byte
	_, _ = ctx.Write(gzipHeader)
	// A stored block, not final: BFINAL 0, BTYPE 00, padding, then LEN
	// and its complement.
	b[0] = 0
	binary.LittleEndian.PutUint16(b[1:], uint16(len(head)))
	binary.LittleEndian.PutUint16(b[3:], ^uint16(len(head)))
	_, _ = ctx.Write(b[:5])
	_, _ = ctx.Write(head)
	_, _ = ctx.Write(def)
	crc := crc32.Update(crc32.ChecksumIEEE(head), crc32.IEEETable, tail)
	binary.LittleEndian.PutUint32(b[:], crc)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(head)+len(tail)))
	_, _ = ctx.Write(b[:8])
}
