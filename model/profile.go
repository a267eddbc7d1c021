package model

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"sort"
)

// Profile is what edgerec knows of one user or visitor: attributes set by
// the shop or CRM (company, industry, consent flags …) and behaviour kept
// incrementally from events: first and last seen, the last time of each
// event type, purchase count and value, and event counts by type, page
// path and item category in time buckets.
//
// Buckets are an hour wide for at least the newest HotHours hours and a
// UTC day wide before that: Compact folds the hours of a day once the
// whole day is older than HotHours, and drops buckets older than the
// retention. A window count sums the buckets that end after the window's
// start, so windows of up to 48 hours are exact to the hour and longer
// ones to the day at their far end. Dimensions are capped at MaxDims:
// past it the page and category dimensions touched longest ago go;
// event-type counts always stay.
//
// Decode aliases its input: names, keys and string values stay valid only
// while the decoded bytes do.
type Profile struct {
	Attrs               []ProfileAttr
	FirstSeen, LastSeen int64
	// Last is the Unix time of the newest event of each type; 0 if none.
	Last          [eventTypeCount]int64
	Purchases     int64
	PurchaseValue float64
	Dims          []Dim

	buckets []TimeBucket // backing of Dims' buckets after Decode
}

// Dimension kinds.
const (
	DimType     = 't' // events of a type: Name is the type's wire name
	DimPage     = 'p' // pageviews of a path
	DimCategory = 'c' // item events (view, click, cart, purchase) in a category
)

// Dim is one counted dimension: its buckets, newest first.
type Dim struct {
	Kind    byte
	Name    []byte
	Buckets []TimeBucket
}

// TimeBucket counts N events in the Span hours from hour Start (hours since
// the Unix epoch).
type TimeBucket struct {
	Start uint32
	Span  uint8
	N     uint32
}

// AttrType is the JSON type of an attribute value.
type AttrType uint8

// Attribute types.
const (
	AttrString AttrType = 's'
	AttrNumber AttrType = 'n'
	AttrBool   AttrType = 'b'
)

// ProfileAttr is one attribute: a string, number or bool.
type ProfileAttr struct {
	Key  []byte
	Type AttrType
	Str  []byte
	Num  float64 // the number, or 1 for true
}

// HotHours is how many of the newest hours keep hour buckets.
const HotHours = 48

// MaxDims bounds the dimensions of one profile: past it, the dimension
// touched longest ago is dropped.
const MaxDims = 256

// ErrBadProfile is returned by Decode for bytes it did not write.
var ErrBadProfile = errors.New("model: bad profile encoding")

const profileVersion = 1

// Reset empties p, keeping its memory.
func (p *Profile) Reset() {
	attrs, dims, buckets := p.Attrs[:0], p.Dims[:0], p.buckets[:0]
	*p = Profile{Attrs: attrs, Dims: dims, buckets: buckets}
}

// Seen reports whether any event was added.
func (p *Profile) Seen() bool { return p.LastSeen != 0 }

// Attr returns the attribute named key, or nil.
func (p *Profile) Attr(key string) *ProfileAttr {
	for i := range p.Attrs {
		if string(p.Attrs[i].Key) == key {
			return &p.Attrs[i]
		}
	}
	return nil
}

// SetAttr sets (or with t == 0 deletes) an attribute, keeping Attrs sorted
// by key. It copies key and str.
func (p *Profile) SetAttr(key []byte, t AttrType, str []byte, num float64) {
	i := sort.Search(len(p.Attrs), func(i int) bool { return bytes.Compare(p.Attrs[i].Key, key) >= 0 })
	found := i < len(p.Attrs) && bytes.Equal(p.Attrs[i].Key, key)
	if t == 0 {
		if found {
			p.Attrs = append(p.Attrs[:i], p.Attrs[i+1:]...)
		}
		return
	}
	a := ProfileAttr{Key: bytes.Clone(key), Type: t, Num: num}
	if t == AttrString {
		a.Str = bytes.Clone(str)
	}
	if found {
		p.Attrs[i] = a
		return
	}
	p.Attrs = append(p.Attrs, ProfileAttr{})
	copy(p.Attrs[i+1:], p.Attrs[i:])
	p.Attrs[i] = a
}

// Add counts one event at Unix time ts. page is the pageview's path and
// category the item's category; either may be empty. Names are copied.
func (p *Profile) Add(t EventType, ts int64, value float64, page, category []byte) {
	if ts <= 0 {
		return
	}
	if p.FirstSeen == 0 || ts < p.FirstSeen {
		p.FirstSeen = ts
	}
	p.LastSeen = max(p.LastSeen, ts)
	if t < eventTypeCount {
		p.Last[t] = max(p.Last[t], ts)
	}
	if t == EventPurchase {
		p.Purchases++
		p.PurchaseValue = addValue(p.PurchaseValue, value)
	}
	hour := uint32(ts / 3600)
	p.count(DimType, []byte(t.String()), hour, 1)
	if t == EventPageview && len(page) > 0 {
		p.count(DimPage, page, hour, 1)
	}
	if len(category) > 0 {
		switch t {
		case EventView, EventClick, EventCart, EventPurchase:
			p.count(DimCategory, category, hour, 1)
		}
	}
}

// count adds n to the bucket of hour in the dimension (kind, name).
func (p *Profile) count(kind byte, name []byte, hour uint32, n uint32) {
	d := p.dim(kind, name)
	if d == nil {
		p.Dims = append(p.Dims, Dim{Kind: kind, Name: bytes.Clone(name)})
		d = &p.Dims[len(p.Dims)-1]
	}
	p.addBucket(d, TimeBucket{Start: hour, Span: 1, N: n})
}

func (p *Profile) addBucket(d *Dim, b TimeBucket) {
	i := 0
	for i < len(d.Buckets) && d.Buckets[i].Start > b.Start {
		i++
	}
	if i < len(d.Buckets) && d.Buckets[i].Start == b.Start && d.Buckets[i].Span == b.Span {
		d.Buckets[i].N += b.N
		return
	}
	// A full-slice expression in Decode makes this append copy rather than
	// overwrite the next dimension's buckets.
	d.Buckets = append(d.Buckets, TimeBucket{})
	copy(d.Buckets[i+1:], d.Buckets[i:])
	d.Buckets[i] = b
}

func (p *Profile) dim(kind byte, name []byte) *Dim {
	for i := range p.Dims {
		if p.Dims[i].Kind == kind && bytes.Equal(p.Dims[i].Name, name) {
			return &p.Dims[i]
		}
	}
	return nil
}

// Compact folds hour buckets older than HotHours before now into day
// buckets, drops buckets that ended retention seconds before now, drops
// empty dimensions, and keeps at most MaxDims of them (those touched most
// recently).
func (p *Profile) Compact(now, retention int64) {
	nowHour := uint32(max(now, 0) / 3600)
	oldest := int64(now-retention) / 3600
	dims := p.Dims[:0]
	for _, d := range p.Dims {
		// In place: folded never passes the bucket being read.
		bs := d.Buckets
		folded := bs[:0]
		for _, b := range bs {
			if int64(b.Start)+int64(b.Span) <= oldest {
				continue
			}
			// An hour folds once its whole day is older than the hot hours:
			// windows of up to HotHours stay exact to the hour.
			if day := b.Start / 24 * 24; b.Span == 1 && day+24+HotHours <= nowHour {
				b.Start, b.Span = day, 24
			}
			if n := len(folded); n > 0 && folded[n-1].Start == b.Start && folded[n-1].Span == b.Span {
				folded[n-1].N += b.N
				continue
			}
			folded = append(folded, b)
		}
		if len(folded) == 0 {
			continue
		}
		d.Buckets = folded
		dims = append(dims, d)
	}
	p.Dims = dims
	if len(p.Dims) > MaxDims {
		// Event-type counts always stay (there are few); pages and
		// categories touched longest ago go.
		sort.SliceStable(p.Dims, func(i, j int) bool {
			a, b := &p.Dims[i], &p.Dims[j]
			if (a.Kind == DimType) != (b.Kind == DimType) {
				return a.Kind == DimType
			}
			return a.Buckets[0].Start > b.Buckets[0].Start
		})
		p.Dims = p.Dims[:MaxDims]
	}
}

// Count returns the events of dimension (kind, name) in the window of
// seconds before now. A name ending in '*' counts every dimension of the
// kind whose name starts with the rest ("/blog/*").
func (p *Profile) Count(kind byte, name string, window, now int64) int64 {
	from := (now - window) / 3600
	prefix := len(name) > 0 && name[len(name)-1] == '*'
	if prefix {
		name = name[:len(name)-1]
	}
	var n int64
	for i := range p.Dims {
		d := &p.Dims[i]
		if d.Kind != kind {
			continue
		}
		if prefix {
			if !bytes.HasPrefix(d.Name, []byte(name)) {
				continue
			}
		} else if string(d.Name) != name {
			continue
		}
		n += d.countFrom(from)
	}
	return n
}

// CountIn returns d's events in the window of that many seconds before now:
// Count for one dimension, whatever its name (a stored page path may end
// in '*' itself).
func (d *Dim) CountIn(window, now int64) int64 { return d.countFrom((now - window) / 3600) }

// countFrom sums the buckets that end after hour from.
func (d *Dim) countFrom(from int64) int64 {
	var n int64
	for _, b := range d.Buckets {
		if int64(b.Start)+int64(b.Span) > from {
			n += int64(b.N)
		}
	}
	return n
}

// Merge adds o's behaviour into p (a visitor's into the user they logged
// in as) and the attributes p lacks.
func (p *Profile) Merge(o *Profile) { p.MergeSince(o, MergeMark{}) }

// MergeMark is how much of a visitor's profile an earlier merge took: its
// LastSeen then, and its purchase count and value.
type MergeMark struct {
	LastSeen      int64
	Purchases     int64
	PurchaseValue float64
}

// Mark returns the MergeMark of merging p as it is.
func (p *Profile) Mark() MergeMark {
	return MergeMark{LastSeen: p.LastSeen, Purchases: p.Purchases, PurchaseValue: p.PurchaseValue}
}

// MergeSince merges what o gained after the merge that left mark: the
// buckets starting after the hour of mark.LastSeen (events later in that
// same hour are not carried over) and the purchases since.
func (p *Profile) MergeSince(o *Profile, mark MergeMark) {
	var from uint32
	if mark.LastSeen > 0 {
		from = uint32(mark.LastSeen/3600) + 1
	}
	if o.FirstSeen != 0 && (p.FirstSeen == 0 || o.FirstSeen < p.FirstSeen) {
		p.FirstSeen = o.FirstSeen
	}
	p.LastSeen = max(p.LastSeen, o.LastSeen)
	for i := range p.Last {
		p.Last[i] = max(p.Last[i], o.Last[i])
	}
	p.Purchases += max(o.Purchases-mark.Purchases, 0)
	p.PurchaseValue = addValue(p.PurchaseValue, addValue(o.PurchaseValue, -mark.PurchaseValue))
	for _, od := range o.Dims {
		var d *Dim
		for _, b := range od.Buckets {
			if b.Start < from {
				continue
			}
			if d == nil {
				if d = p.dim(od.Kind, od.Name); d == nil {
					p.Dims = append(p.Dims, Dim{Kind: od.Kind, Name: bytes.Clone(od.Name)})
					d = &p.Dims[len(p.Dims)-1]
				}
			}
			p.addBucket(d, b)
		}
	}
	for _, a := range o.Attrs {
		if p.Attr(string(a.Key)) == nil {
			p.SetAttr(a.Key, a.Type, a.Str, a.Num)
		}
	}
}

// Append appends p's encoding to dst.
func (p *Profile) Append(dst []byte) []byte {
	dst = append(dst, profileVersion)
	dst = binary.AppendUvarint(dst, uint64(len(p.Attrs)))
	for _, a := range p.Attrs {
		dst = appendBytes(dst, a.Key)
		dst = append(dst, byte(a.Type))
		switch a.Type {
		case AttrString:
			dst = appendBytes(dst, a.Str)
		default:
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(a.Num))
		}
	}
	dst = binary.AppendVarint(dst, p.FirstSeen)
	dst = binary.AppendVarint(dst, p.LastSeen)
	n := 0
	for _, t := range p.Last {
		if t != 0 {
			n++
		}
	}
	dst = append(dst, byte(n))
	for i, t := range p.Last {
		if t != 0 {
			dst = append(dst, byte(i))
			dst = binary.AppendVarint(dst, t)
		}
	}
	dst = binary.AppendVarint(dst, p.Purchases)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(p.PurchaseValue))
	dst = binary.AppendUvarint(dst, uint64(len(p.Dims)))
	for _, d := range p.Dims {
		dst = append(dst, d.Kind)
		dst = appendBytes(dst, d.Name)
		dst = binary.AppendUvarint(dst, uint64(len(d.Buckets)))
		for _, b := range d.Buckets {
			dst = binary.AppendUvarint(dst, uint64(b.Start))
			dst = append(dst, b.Span)
			dst = binary.AppendUvarint(dst, uint64(b.N))
		}
	}
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// Decode replaces p with the profile encoded in src, reusing p's memory;
// p aliases src. Empty src decodes to an empty profile.
func (p *Profile) Decode(src []byte) error {
	p.Reset()
	if len(src) == 0 {
		return nil
	}
	r := profileReader{b: src}
	if r.byte() != profileVersion {
		return ErrBadProfile
	}
	for n := r.uvarint(); n > 0 && r.ok(); n-- {
		a := ProfileAttr{Key: r.bytes(), Type: AttrType(r.byte())}
		switch a.Type {
		case AttrString:
			a.Str = r.bytes()
		case AttrNumber, AttrBool:
			a.Num = r.float()
		default:
			return ErrBadProfile
		}
		p.Attrs = append(p.Attrs, a)
	}
	p.FirstSeen, p.LastSeen = r.varint(), r.varint()
	for n := r.byte(); n > 0 && r.ok(); n-- {
		t := r.byte()
		ts := r.varint()
		if t >= byte(eventTypeCount) {
			return ErrBadProfile
		}
		p.Last[t] = ts
	}
	p.Purchases = r.varint()
	// Older versions could store an overflowed sum: keep it finite.
	p.PurchaseValue = finite(r.float())
	nd := r.uvarint()
	if nd > uint64(len(src)) {
		return ErrBadProfile
	}
	for ; nd > 0 && r.ok(); nd-- {
		kind, name := r.byte(), r.bytes()
		nb := r.uvarint()
		if nb > uint64(len(src)) {
			return ErrBadProfile
		}
		lo := len(p.buckets)
		for ; nb > 0 && r.ok(); nb-- {
			start := r.uvarint()
			span := r.byte()
			p.buckets = append(p.buckets, TimeBucket{Start: uint32(start), Span: span, N: uint32(r.uvarint())})
		}
		p.Dims = append(p.Dims, Dim{Kind: kind, Name: name})
		p.Dims[len(p.Dims)-1].Buckets = p.buckets[lo:len(p.buckets):len(p.buckets)]
	}
	if !r.ok() || len(r.b) != 0 {
		return ErrBadProfile
	}
	// Dims decoded before the buckets array grew point at its old copy,
	// which still holds their buckets: correct, if not contiguous.
	return nil
}

// profileReader reads what Append wrote; a short or malformed input sets
// bad and yields zeros.
type profileReader struct {
	b   []byte
	bad bool
}

func (r *profileReader) ok() bool { return !r.bad }

func (r *profileReader) byte() byte {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *profileReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *profileReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *profileReader) float() float64 {
	if len(r.b) < 8 {
		r.bad = true
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func (r *profileReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad = true
		return nil
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	return b
}

// addValue adds v to sum, ignoring a NaN or infinite v and saturating at
// ±math.MaxFloat64, so that a purchase value stays a finite number (and
// valid JSON) whatever the events say.
func addValue(sum, v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return sum
	}
	return finite(sum + v)
}

// finite is x saturated at ±math.MaxFloat64, and 0 for NaN.
func finite(x float64) float64 {
	if math.IsNaN(x) {
		return 0
	}
	return max(min(x, math.MaxFloat64), -math.MaxFloat64)
}
