package index

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/edgerec/edgerec/model"
)

// ErrCorrupt is returned when a stored value cannot be decoded.
var ErrCorrupt = errors.New("index: corrupt value")

const neighbourSize = 12

// AppendList appends the encoding of ns to dst: uvarint count, then per
// entry item uint32, score float32 bits, count uint32, all little endian.
func AppendList(dst []byte, ns []model.Neighbour) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(ns)))
	for _, n := range ns {
		dst = binary.LittleEndian.AppendUint32(dst, n.Item)
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(n.Score))
		dst = binary.LittleEndian.AppendUint32(dst, n.Count)
	}
	return dst
}

// DecodeList appends the neighbours encoded in src to dst. src is not
// retained: it may be a Pebble value about to be released.
func DecodeList(dst []model.Neighbour, src []byte) ([]model.Neighbour, error) {
	n, w := binary.Uvarint(src)
	// n is compared by division: n*neighbourSize wraps for a count of
	// 2^64/12 or more, and a crafted count could then pass for the length
	// of a short value (testdata/fuzz/FuzzDecodeList/crash-count-overflow).
	if w <= 0 || (len(src)-w)%neighbourSize != 0 || uint64((len(src)-w)/neighbourSize) != n {
		return dst, ErrCorrupt
	}
	src = src[w:]
	for i := uint64(0); i < n; i++ {
		e := src[i*neighbourSize:]
		dst = append(dst, model.Neighbour{
			Item:  binary.LittleEndian.Uint32(e),
			Score: math.Float32frombits(binary.LittleEndian.Uint32(e[4:])),
			Count: binary.LittleEndian.Uint32(e[8:]),
		})
	}
	return dst, nil
}

// ItemInfo is an item record of a snapshot: the catalog entry plus the
// behaviour counts the build saw.
type ItemInfo struct {
	model.Item
	// Cats are the category numbers of Item.Categories, in the same order.
	Cats []uint32
	// Users is the number of users with an interest event on the item,
	// Baskets the number of baskets holding it, Events its event count.
	Users, Baskets, Events uint32
}

const (
	itemHasPrice = 1 << iota
	itemHasStock
)

// AppendItem appends the encoding of it to dst.
func AppendItem(dst []byte, it *ItemInfo) []byte {
	var flags byte
	if it.HasPrice {
		flags |= itemHasPrice
	}
	if it.HasStock {
		flags |= itemHasStock
	}
	dst = append(dst, flags)
	dst = appendString(dst, it.ID)
	dst = appendString(dst, it.Title)
	dst = appendString(dst, it.Brand)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(it.Price))
	dst = binary.AppendVarint(dst, it.Stock)
	dst = binary.AppendUvarint(dst, uint64(it.Users))
	dst = binary.AppendUvarint(dst, uint64(it.Baskets))
	dst = binary.AppendUvarint(dst, uint64(it.Events))
	dst = binary.AppendUvarint(dst, uint64(len(it.Categories)))
	for i, c := range it.Categories {
		dst = appendString(dst, c)
		dst = binary.AppendUvarint(dst, uint64(it.Cats[i]))
	}
	dst = binary.AppendUvarint(dst, uint64(len(it.Attrs)))
	for _, a := range it.Attrs {
		dst = appendString(dst, a.Key)
		dst = appendString(dst, a.Value)
	}
	return dst
}

// DecodeItem decodes an item record. Strings are copied out of src.
func DecodeItem(it *ItemInfo, src []byte) error {
	d := decoder{b: src}
	flags := d.byte()
	*it = ItemInfo{}
	it.HasPrice = flags&itemHasPrice != 0
	it.HasStock = flags&itemHasStock != 0
	it.ID = d.string()
	it.Title = d.string()
	it.Brand = d.string()
	it.Price = math.Float64frombits(d.uint64())
	it.Stock = d.varint()
	it.Users = uint32(d.uvarint())
	it.Baskets = uint32(d.uvarint())
	it.Events = uint32(d.uvarint())
	if n := d.count(); n > 0 {
		it.Categories = make([]string, n)
		it.Cats = make([]uint32, n)
		for i := range it.Categories {
			it.Categories[i] = d.string()
			it.Cats[i] = uint32(d.uvarint())
		}
	}
	if n := d.count(); n > 0 {
		it.Attrs = make([]model.Attr, n)
		for i := range it.Attrs {
			it.Attrs[i].Key = d.string()
			it.Attrs[i].Value = d.string()
		}
	}
	if d.err || len(d.b) != 0 {
		return ErrCorrupt
	}
	return nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads a record; after the first error every read returns zero
// and err stays set.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.err = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length that must fit in what is left of the record.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.err = true
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count()
	if d.err {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
