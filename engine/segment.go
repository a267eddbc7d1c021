package engine

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/edgerec/edgerec/engine/rule"
)

// Segment is a marketing hypothesis over the profile, as an expr-lang
// expression ("visited pricing twice in 30 days, never the contact page":
// views("/pricing", "30d") >= 2 && views("/contact", "30d") == 0).
//
// expr-lang parses and type-checks the expression at load; the checked
// tree is then lowered to Go closures, so a request evaluates every
// segment without the VM's boxing: no allocation, tens of nanoseconds a
// rule. The language is expr's, restricted to what a profile needs:
// literals, purchases, purchase_value, the functions below, ! && || and
// or not, comparisons, + - * /, `in [...]`, contains, startsWith,
// endsWith. Function arguments are constants, checked at load.
//
//	views(path, window)      pageviews of path ("/blog/*": every path under /blog/)
//	events(type, window)     events of a type (view, cart, purchase, pageview …)
//	category(name, window)   item events (view, click, cart, purchase) in a category
//	hours_since(what)        hours since the last event of a type, or "seen",
//	days_since(what)         "first_seen"; +Inf when never
//	attr(key)                a string attribute ("" when absent)
//	num(key)                 a number attribute (NaN when absent)
//	has(key)                 whether the attribute is set
//	consent(channel)         whether the attribute consent_<channel> is true
//
// A window is a number and a unit: 24h, 7d, 2w. A run-time type mismatch
// (attr of a number, num of a string) makes the segment not match; the
// server logs it and counts it in edgerec_segment_errors_total.
type Segment struct {
	Description string `yaml:"description"`
	If          string `yaml:"if"`

	name string
	eval rule.Func
}

// Profiles configure what GET /v1/users/{id} reports.
type Profiles struct {
	// Windows are the rolling windows of the counts; default 1d, 7d, 30d.
	Windows []string `yaml:"windows"`

	windows []int64
}

// maxSegments bounds the segments of a config: membership is a SegSet.
const maxSegments = 256

type SegSet [maxSegments / 64]uint64

func (s *SegSet) add(i int)     { s[i/64] |= 1 << (i % 64) }
func (s SegSet) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

// applies reports whether a placement rule or pin whose seg field is seg
// (1 + the segment's index; 0: everyone) applies to a visitor in s.
func (s SegSet) applies(seg int) bool { return seg == 0 || s.has(seg-1) }
func (s *SegSet) hasAny(o SegSet) bool {
	for i := range s {
		if s[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

// validateSegments checks the profile windows and compiles the segments.
func (c *Config) validateSegments(at func(path, msg string) error) error {
	if len(c.Profiles.Windows) == 0 {
		c.Profiles.Windows = []string{"1d", "7d", "30d"}
	}
	c.Profiles.windows = c.Profiles.windows[:0]
	for i, w := range c.Profiles.Windows {
		s, err := rule.ParseWindow(w)
		if err != nil {
			return at(fmt.Sprintf("$.profiles.windows[%d]", i), err.Error())
		}
		c.Profiles.windows = append(c.Profiles.windows, s)
	}
	if len(c.Segments) > maxSegments {
		return at("$.segments", fmt.Sprintf("%d segments: at most %d", len(c.Segments), maxSegments))
	}
	c.segments = c.segments[:0]
	c.segmentIndex = map[string]int{}
	for _, name := range sortedKeys(c.Segments) {
		seg := c.Segments[name]
		base := "$.segments." + pathKey(name)
		if !idPattern.MatchString(name) {
			return at(base, fmt.Sprintf("segment name %q: want 1-64 of A-Z a-z 0-9 _ -", name))
		}
		if seg == nil || strings.TrimSpace(seg.If) == "" {
			return at(base, fmt.Sprintf("segment %q: needs an `if` expression", name))
		}
		eval, err := rule.Compile(seg.If)
		if err != nil {
			return at(base+".if", fmt.Sprintf("segment %q: %v", name, err))
		}
		seg.name, seg.eval = name, eval
		c.segmentIndex[name] = len(c.segments)
		c.segments = append(c.segments, seg)
	}
	return nil
}

// Has reports whether segment i of the config (in SegmentName order) is
// in the set.
func (s SegSet) Has(i int) bool { return s.has(i) }

// NumSegments returns the number of configured segments.
func (c *Config) NumSegments() int { return len(c.segments) }

// SegmentName returns the name of segment i, in name order.
func (c *Config) SegmentName(i int) string { return c.segments[i].name }

// segmentsOf returns the segments of cfg that user is in, evaluated over
// their profile once per View, and kept for the minute unless they write
// (cache.go).
func (v *View) segmentsOf(user []byte) (SegSet, error) {
	if len(v.cfg.segments) == 0 || len(user) == 0 {
		return SegSet{}, nil
	}
	if v.segsOK && bytes.Equal(v.segsUser, user) {
		return v.segs, nil
	}
	var key uint64
	c := v.e.cache.segs
	if c != nil {
		key = v.segmentsKey(user)
		var segs SegSet
		if c.get(key, segs[:]) {
			v.keepSegments(user, segs)
			return segs, nil
		}
	}
	if err := v.loadProfile(user); err != nil {
		return SegSet{}, err
	}
	segs := v.e.evalSegments(&v.rc, v.cfg.segments)
	if c != nil {
		c.set(key, segs[:])
	}
	v.keepSegments(user, segs)
	return segs, nil
}

// keepSegments remembers user's segments for the rest of the View.
func (v *View) keepSegments(user []byte, segs SegSet) {
	v.segs, v.segsUser, v.segsOK = segs, append(v.segsUser[:0], user...), true
}

// Segments returns the segments user is in (Config.SegmentName names
// them). Reading segments writes nothing.
func (v *View) Segments(user []byte) (SegSet, error) {
	if err := v.e.CheckID("user", user); err != nil {
		return SegSet{}, err
	}
	return v.segmentsOf(user)
}

// evalSegments evaluates every segment of list over the profile in c. A
// segment that fails at run time does not match; the failure is logged
// and counted.
func (e *Engine) evalSegments(c *rule.Ctx, list []*Segment) SegSet {
	var set SegSet
	for i, seg := range list {
		c.Err = nil
		if seg.eval(c) && c.Err == nil {
			set.add(i)
		}
		if c.Err != nil {
			e.segmentErrors.Add(1)
			e.LogThrottled("segment failed", "segment", seg.name, "err", c.Err)
		}
	}
	return set
}
