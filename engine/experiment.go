package engine

// Experiment accounting. Every count is of visitors, never of events:
//
//   - A visitor's assignment, "as/<exp>/<visitor>" in the state store's
//     metadata, holds their variant, the phase they were last exposed in,
//     whether that exposure was counted, and when the record was last
//     written or renewed (retention.go). An exposure counts once per
//     visitor and phase: at the first randomised decision (exposure:
//     decision) or at the first exposure event (exposure: event).
//   - A rule with a holdback keeps "rx/<exp>/<rule>/<visitor>": the phase,
//     the arm (t: the rule's variant, c: held back on the control), and
//     when it was last written or renewed.
//   - A visitor converts once per phase and goal: "xc/<exp>/<phase>/<goal>/
//     <visitor>" holds the value summed so far, capped at the goal's
//     max_value, and when it was last written. A conversion counts only
//     for a visitor exposed in the current phase, for the arm the store
//     says they saw (not what the event claims), so rates stay in [0, 1]
//     whatever arrives.
//
// Counters, "x/<exp>/<phase>/v/<variant>/<name>" for the split and
// "x/<exp>/<phase>/r/<rule>/<t|c>/<name>" for a rule's arms, with names
// exposures, exposures@<hour>, conv/<goal> and value/<goal>. The records
// and counters of one event go in one batch (index.State.Write), and
// reading and writing a visitor's records is serialised by a stripe lock
// on the visitor, so two requests at once cannot both count a first time.
//
// A phase starts when a page's variants, weights, traffic, control,
// rules or goals change (SetConfig): "ph/<exp>" lists the phases, each
// with its start time and the fingerprint of the config it ran.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cespare/xxhash/v2"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// Goal is what a conversion counts for.
type Goal struct {
	ID string `yaml:"id"`
	// MaxValue caps the value a visitor's conversions add up to; an event
	// with a larger value is refused. Default DefaultMaxValue.
	MaxValue float64 `yaml:"max_value"`
	Primary  bool    `yaml:"primary"`
}

// DefaultMaxValue is a goal's max_value when the config names none.
const DefaultMaxValue = 1e6

// defaultGoal is the goal of a page that configures none.
const defaultGoal = "conversion"

// The goals of a placement's experiment.
const (
	goalClick    = "click"
	goalPurchase = "purchase"
)

func (p *Page) validateGoals(base string, at func(path, msg string) error) error {
	if len(p.Goals) == 0 {
		p.Goals = []*Goal{{ID: defaultGoal, Primary: true}}
	}
	p.primary = -1
	seen := map[string]bool{}
	for i, g := range p.Goals {
		gp := fmt.Sprintf("%s.goals[%d]", base, i)
		if g == nil || !idPattern.MatchString(g.ID) || seen[g.ID] {
			return at(gp, fmt.Sprintf("page %q: goal %d needs a unique id of A-Z a-z 0-9 _ -", p.name, i+1))
		}
		seen[g.ID] = true
		if g.MaxValue == 0 {
			g.MaxValue = DefaultMaxValue
		}
		if !(g.MaxValue > 0) || math.IsInf(g.MaxValue, 0) {
			return at(gp+".max_value", fmt.Sprintf("page %q: goal %q: max_value %v: want a positive number", p.name, g.ID, g.MaxValue))
		}
		if g.Primary {
			if p.primary >= 0 {
				return at(gp+".primary", fmt.Sprintf("page %q: goals %q and %q are both primary", p.name, p.Goals[p.primary].ID, g.ID))
			}
			p.primary = i
		}
	}
	if p.primary < 0 {
		p.primary = 0
		p.Goals[0].Primary = true
	}
	return nil
}

// goal returns the index of goal id (the primary goal when empty), or -1.
func (p *Page) goal(id []byte) int {
	if len(id) == 0 {
		return p.primary
	}
	for i, g := range p.Goals {
		if g.ID == string(id) {
			return i
		}
	}
	return -1
}

func (p *Page) goalNames() string {
	names := make([]string, len(p.Goals))
	for i, g := range p.Goals {
		names[i] = g.ID
	}
	return strings.Join(names, ", ")
}

// fingerprint hashes what starts a new phase when it changes.
func (p *Page) fingerprint() uint64 {
	var b strings.Builder
	fmt.Fprintf(&b, "mode=%s traffic=%v control=%d exposure=%s\n", p.Mode, p.traffic, p.control, p.Exposure)
	for _, v := range p.Variants {
		fmt.Fprintf(&b, "variant %q %v\n", v.ID, v.Weight)
	}
	for _, r := range p.Rules {
		fmt.Fprintf(&b, "rule %q %q %q %v\n", r.ID, r.If, r.Variant, r.Holdback)
	}
	for _, g := range p.Goals {
		fmt.Fprintf(&b, "goal %q %v %v\n", g.ID, g.MaxValue, g.Primary)
	}
	return xxhash.Sum64String(b.String())
}

// Phase is a period of an experiment with one configuration.
type Phase struct {
	N     uint64 `json:"phase"`
	Start int64  `json:"started_at"` // Unix seconds
	fp    uint64
}

// registerPhases gives every page of c its current phase: the last one
// recorded when its fingerprint is unchanged, a new one otherwise.
func (e *Engine) registerPhases(c *Config) {
	c.experiments(func(p *Page) {
		p.phase, p.phases = 1, []Phase{{N: 1, Start: e.exactNow(), fp: p.fp}}
		if e.state == nil {
			return
		}
		key := []byte("ph/" + p.Experiment)
		val, _, err := e.state.AppendMeta(nil, key)
		if err != nil {
			e.log.Error("cannot read an experiment's phases", "experiment", p.Experiment, "err", err)
			return
		}
		phases := decodePhases(val)
		if n := len(phases); n > 0 && phases[n-1].fp == p.fp {
			p.phase, p.phases = phases[n-1].N, phases
			return
		}
		next := Phase{N: 1, Start: e.exactNow(), fp: p.fp}
		if n := len(phases); n > 0 {
			next.N = phases[n-1].N + 1
		}
		phases = append(phases, next)
		if err := e.state.PutMeta(key, encodePhases(phases)); err != nil {
			e.log.Error("cannot record an experiment's new phase", "experiment", p.Experiment, "err", err)
		}
		p.phase, p.phases = next.N, phases
		if next.N > 1 {
			e.log.Info("experiment config changed: new phase", "experiment", p.Experiment, "phase", next.N)
		}
	})
}

func encodePhases(ps []Phase) []byte {
	var b []byte
	for _, p := range ps {
		b = binary.AppendUvarint(b, p.N)
		b = binary.AppendVarint(b, p.Start)
		b = binary.LittleEndian.AppendUint64(b, p.fp)
	}
	return b
}

func decodePhases(b []byte) []Phase {
	var ps []Phase
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 {
			return ps
		}
		b = b[k:]
		start, k := binary.Varint(b)
		if k <= 0 || len(b[k:]) < 8 {
			return ps
		}
		b = b[k:]
		ps = append(ps, Phase{N: n, Start: start, fp: binary.LittleEndian.Uint64(b)})
		b = b[8:]
	}
	return ps
}

// assignment is a visitor's record on one experiment.
type assignment struct {
	variant []byte
	phase   uint64
	exposed bool
	// at is when the record was written or last renewed, Unix seconds;
	// 0 for records written before it was kept.
	at int64
}

// decodeAssignment reads "variant" (written before phases: phase 0),
// "variant\x00<uvarint phase><flags>" (before retention) or
// "variant\x00<uvarint phase><flags><uvarint at>". Readers ignore what
// follows the flags, so older versions read the newer records.
func decodeAssignment(v []byte) assignment {
	id, rest, ok := bytes.Cut(v, []byte{0})
	a := assignment{variant: id}
	if ok {
		if ph, n := binary.Uvarint(rest); n > 0 && len(rest) > n {
			a.phase, a.exposed = ph, rest[n]&1 != 0
			if at, m := binary.Uvarint(rest[n+1:]); m > 0 {
				a.at = int64(at)
			}
		}
	}
	return a
}

func appendAssignment(dst, variant []byte, phase uint64, exposed bool, at int64) []byte {
	dst = append(append(dst, variant...), 0)
	dst = binary.AppendUvarint(dst, phase)
	flags := byte(0)
	if exposed {
		flags = 1
	}
	return binary.AppendUvarint(append(dst, flags), uint64(max(at, 0)))
}

// appendRuleRecord appends a rule record: uvarint phase, the arm, 1, and
// uvarint at (see assignment.at).
func appendRuleRecord(dst []byte, phase uint64, arm byte, at int64) []byte {
	dst = append(binary.AppendUvarint(dst, phase), arm, 1)
	return binary.AppendUvarint(dst, uint64(max(at, 0)))
}

// decodeRuleRecord reads a rule record; ok is false when it is damaged.
func decodeRuleRecord(v []byte) (phase uint64, arm byte, at int64, ok bool) {
	ph, n := binary.Uvarint(v)
	if n <= 0 || len(v) <= n {
		return 0, 0, 0, false
	}
	if len(v) > n+2 {
		if x, m := binary.Uvarint(v[n+2:]); m > 0 {
			at = int64(x)
		}
	}
	return ph, v[n], at, true
}

// Rule arms.
const (
	armRule     = 't'
	armHoldback = 'c'
)

// stripes serialise the reads and writes of one visitor's experiment
// records.
type stripes [256]sync.Mutex

func (s *stripes) index(visitor []byte) int { return int(xxhash.Sum64(visitor) & 255) }

func (s *stripes) of(visitor []byte) *sync.Mutex { return &s[s.index(visitor)] }

func appendAssignKey(dst []byte, exp string, visitor []byte) []byte {
	dst = append(append(append(dst, "as/"...), exp...), '/')
	return append(dst, visitor...)
}

func appendRuleKey(dst []byte, exp, rule string, visitor []byte) []byte {
	dst = append(append(append(dst, "rx/"...), exp...), '/')
	dst = append(append(dst, rule...), '/')
	return append(dst, visitor...)
}

// appendArmKey appends the counter prefix of an arm in a phase: a split
// variant ("v/<variant>/") or a rule's arm ("r/<rule>/<t|c>/").
func appendSplitKey(dst []byte, exp string, phase uint64, variant []byte) []byte {
	dst = append(append(append(dst, "x/"...), exp...), '/')
	dst = strconv.AppendUint(dst, phase, 10)
	dst = append(append(dst, "/v/"...), variant...)
	return append(dst, '/')
}

func appendRuleArmKey(dst []byte, exp string, phase uint64, rule string, arm byte) []byte {
	dst = append(append(append(dst, "x/"...), exp...), '/')
	dst = strconv.AppendUint(dst, phase, 10)
	dst = append(append(dst, "/r/"...), rule...)
	return append(dst, '/', arm, '/')
}

// exposureCounters appends the counters of one exposure of arm (a key
// prefix from appendSplitKey or appendRuleArmKey) at Unix time now.
func exposureCounters(dst []index.Counter, arm []byte, now int64) []index.Counter {
	k := append(append([]byte(nil), arm...), "exposures"...)
	h := strconv.AppendInt(append(append([]byte(nil), k...), '@'), now/3600*3600, 10)
	return append(dst, index.Counter{Key: k, Delta: 1}, index.Counter{Key: h, Delta: 1})
}

// conversionCounters appends a first conversion (converters+1) and value.
func conversionCounters(dst []index.Counter, arm []byte, goal string, first bool, value float64) []index.Counter {
	if first {
		dst = append(dst, index.Counter{Key: append(append(append([]byte(nil), arm...), "conv/"...), goal...), Delta: 1})
	}
	if value != 0 {
		dst = append(dst, index.Counter{Key: append(append(append([]byte(nil), arm...), "value/"...), goal...), Delta: value})
	}
	return dst
}

// expWrite gathers the records and counters of a batch of events; reads
// see the records written earlier in the same batch.
type expWrite struct {
	e        *Engine
	now      int64 // Unix seconds
	counters []index.Counter
	metas    []index.KV
	pending  map[string][]byte
	held     []int // stripe indexes, sorted
}

// lock takes the stripe locks of visitors, in stripe order (two batches
// locking in another order could deadlock), until unlock.
func (w *expWrite) lock(visitors [][]byte) {
	for _, v := range visitors {
		w.held = append(w.held, w.e.expLocks.index(v))
	}
	slices.Sort(w.held)
	w.held = slices.Compact(w.held)
	for _, i := range w.held {
		w.e.expLocks[i].Lock()
	}
}

func (w *expWrite) unlock() {
	for _, i := range w.held {
		w.e.expLocks[i].Unlock()
	}
	w.held = w.held[:0]
}

func (w *expWrite) get(key []byte) ([]byte, bool, error) {
	if v, ok := w.pending[string(key)]; ok {
		return v, true, nil
	}
	return w.e.state.AppendMeta(nil, key)
}

func (w *expWrite) set(key, val []byte) {
	if w.pending == nil {
		w.pending = map[string][]byte{}
	}
	w.pending[string(key)] = val
	w.metas = append(w.metas, index.KV{Key: key, Value: val})
}

// exposure counts the exposure event of visitor to variant (from a
// signed decision) on a page with exposure: event.
func (w *expWrite) exposure(page *Page, visitor, variant []byte, now int64) error {
	key := appendAssignKey(nil, page.Experiment, visitor)
	v, ok, err := w.get(key)
	if err != nil {
		return err
	}
	a := assignment{variant: variant}
	if ok {
		a = decodeAssignment(v)
		if page.variant(a.variant) < 0 {
			a = assignment{variant: variant}
		}
	}
	if a.phase == page.phase && a.exposed {
		return nil
	}
	w.set(key, appendAssignment(nil, a.variant, page.phase, true, w.now))
	w.counters = exposureCounters(w.counters, appendSplitKey(nil, page.Experiment, page.phase, a.variant), now)
	return nil
}

// conversion counts a conversion of visitor for goal g of page: once per
// visitor, phase and goal in every arm the visitor was exposed to in the
// current phase; the value adds up per visitor to at most the goal's
// max_value. once (a keyless beacon) counts nothing after the first.
func (w *expWrite) conversion(page *Page, g int, visitor []byte, value float64, once bool) error {
	goal := page.Goals[g]
	var arms [][]byte
	v, ok, err := w.get(appendAssignKey(nil, page.Experiment, visitor))
	if err != nil {
		return err
	}
	if ok {
		if a := decodeAssignment(v); a.phase == page.phase && a.exposed && page.variant(a.variant) >= 0 {
			arms = append(arms, appendSplitKey(nil, page.Experiment, page.phase, a.variant))
		}
	}
	for _, ri := range page.holdbacks {
		r := page.Rules[ri]
		v, ok, err := w.get(appendRuleKey(nil, page.Experiment, r.ID, visitor))
		if err != nil {
			return err
		}
		if ph, arm, _, good := decodeRuleRecord(v); ok && good && ph == page.phase {
			arms = append(arms, appendRuleArmKey(nil, page.Experiment, page.phase, r.ID, arm))
		}
	}
	if len(arms) == 0 {
		return nil // not exposed in this phase: not in the results
	}
	mk := append(append(append([]byte("xc/"), page.Experiment...), '/'), strconv.AppendUint(nil, page.phase, 10)...)
	mk = append(append(append(append(mk, '/'), goal.ID...), '/'), visitor...)
	mv, seen, err := w.get(mk)
	if err != nil {
		return err
	}
	sum := 0.0
	if seen && len(mv) >= 8 { // then uvarint(at), since retention
		sum = math.Float64frombits(binary.LittleEndian.Uint64(mv))
	}
	if seen && once {
		return nil
	}
	add := max(min(value, goal.MaxValue-sum), 0)
	if seen && add == 0 {
		return nil
	}
	w.set(mk, binary.AppendUvarint(binary.LittleEndian.AppendUint64(nil, math.Float64bits(sum+add)), uint64(max(w.now, 0))))
	for _, arm := range arms {
		w.counters = conversionCounters(w.counters, arm, goal.ID, !seen, add)
	}
	return nil
}

// placementCount counts an impression or click event of visitor on a
// placement experiment, for the variant they were exposed to in the
// current phase: the raw counts of the variant's click-through rate.
func (w *expWrite) placementCount(page *Page, visitor []byte, typ model.EventType) error {
	v, ok, err := w.get(appendAssignKey(nil, page.Experiment, visitor))
	if err != nil || !ok {
		return err
	}
	a := decodeAssignment(v)
	if a.phase != page.phase || !a.exposed || page.variant(a.variant) < 0 {
		return nil
	}
	name := "impressions"
	if typ == model.EventClick {
		name = "clicks"
	}
	k := append(appendSplitKey(nil, page.Experiment, page.phase, a.variant), name...)
	w.counters = append(w.counters, index.Counter{Key: k, Delta: 1})
	return nil
}

// checkConversion validates a conversion's goal and value against page:
// the error names the field.
func checkConversion(page *Page, goal []byte, value float64, hasValue bool) (int, error) {
	g := page.goal(goal)
	if g < 0 {
		return 0, badParam("goal", fmt.Sprintf("experiment %q has no goal %q; its goals: %s", page.Experiment, goal, page.goalNames()))
	}
	if hasValue && (value < 0 || value > page.Goals[g].MaxValue || math.IsNaN(value)) {
		return 0, badParam("value", fmt.Sprintf("%v is outside 0 to max_value %v of goal %q of experiment %q",
			value, page.Goals[g].MaxValue, page.Goals[g].ID, page.Experiment))
	}
	return g, nil
}

// ruleExposure records the first exposure of visitor in the current phase
// to rule r of page (which has a holdback), in arm: the rule's variant or
// the holdback. Like a split assignment it is written without waiting
// for the WAL sync.
func (v *View) ruleExposure(page *Page, r *PageRule, visitor []byte, arm byte) error {
	st := v.e.state
	if st == nil {
		return nil
	}
	k := &v.key
	k.start(keyRuleX)
	k.str(page.Experiment)
	k.str(r.ID)
	k.bytes(visitor)
	k.u64(v.cfg.gen)
	ck := k.sum()
	// The remembered word: 1 | the record's time << 8.
	if x, ok := v.e.cache.word(ck); ok && !v.e.renewDue(int64(x>>8), v.now) {
		return nil
	}
	ds := &v.ds
	ds.key = appendRuleKey(ds.key[:0], page.Experiment, r.ID, visitor)
	m := v.e.expLocks.of(visitor)
	m.Lock()
	defer m.Unlock()
	var err error
	var found bool
	if ds.val, found, err = st.AppendMeta(ds.val[:0], ds.key); err != nil {
		return err
	}
	var counters []index.Counter
	if ph, stored, at, ok := decodeRuleRecord(ds.val); found && ok && ph == page.phase {
		if !v.e.renewDue(at, v.now) {
			v.e.cache.setWord(ck, 1|uint64(at)<<8)
			return nil
		}
		arm = stored // renewed: the visitor stays active (retention.go)
	} else {
		counters = exposureCounters(nil, appendRuleArmKey(nil, page.Experiment, page.phase, r.ID, arm), v.now)
	}
	ds.val = appendRuleRecord(ds.val[:0], page.phase, arm, v.now)
	if err := st.SetMetaAndCount(ds.key, ds.val, counters); err != nil {
		if errors.Is(err, index.ErrNotWritable) {
			return nil // unrecorded on a store that takes no writes, as splits (decide.go)
		}
		return err
	}
	v.e.cache.setWord(ck, 1|uint64(max(v.now, 0))<<8)
	return nil
}

// heldBack reports whether visitor is in the holdback of rule r.
func heldBack(page *Page, r *PageRule, visitor []byte) bool {
	return float64(model.Bucket(page.Seed+"/holdback/"+r.ID, visitor)) < r.Holdback*model.Buckets
}
