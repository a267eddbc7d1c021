package engine

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/expr-lang/expr/vm"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/internal/bytesconv"
	"github.com/edgerec/edgerec/model"
)

// DecideRequest asks which variant of a landing page a visitor sees. Its
// byte slices are borrowed for the call only.
type DecideRequest struct {
	// Page names a configured landing page.
	Page []byte
	// Visitor is the visitor's id; empty for a first visit, for which the
	// decision makes one (Decision.NewVisitor).
	Visitor []byte
	// User, when set, is a logged-in shopper: landing-page rules read
	// their segments; the assignment stays the visitor's.
	User []byte
	// UserAgent tells bots (who get the control) and the device.
	UserAgent []byte
	// Q is the search term; Ref the referrer URL (its host, and its search
	// term when Q and UTMTerm are empty); then the campaign parameters.
	Q, Ref                                                 []byte
	UTMSource, UTMMedium, UTMCampaign, UTMTerm, UTMContent []byte
}

// Decision is the variant a visitor sees. Its slices are valid until the
// View that made it is released.
type Decision struct {
	Page, Experiment, Variant string
	// Payload is the variant's payload as JSON.
	Payload []byte
	// DecisionID names the decision in conversion events: experiment,
	// variant, how it was made, the day it was issued, and a signature
	// binding all of it to the visitor, so a beacon without the API key
	// can carry it until Options.DecisionTTL has passed.
	DecisionID []byte
	// Reason: rule, rule_holdback, sticky, split, holdout, bot or
	// not_in_experiment.
	Reason  string
	Holdout bool
	// Visitor is the visitor decided for; NewVisitor says the decision
	// made the id (a front end keeps it for the visitor, in a cookie).
	Visitor    []byte
	NewVisitor bool
}

// Decision reasons.
const (
	reasonRule      = "rule"
	reasonHoldback  = "rule_holdback"
	reasonSticky    = "sticky"
	reasonSplit     = "split"
	reasonHoldout   = "holdout"
	reasonBot       = "bot"
	reasonNotInTest = "not_in_experiment"
)

// decideState is the scratch of decisions in a View.
type decideState struct {
	keyword, visitor, key, val, id, sig, refVal []byte
	env                                         ruleEnv
	vm                                          vm.VM
	counters                                    [2]index.Counter
	ckey                                        [2][]byte
	h                                           *xxhash.Digest
	rng                                         *rand.Rand
	arms                                        []model.ArmStats
	armIdx                                      []int
	mac                                         hash.Hash
	sum, msg                                    []byte
	segNames                                    []string
	measured                                    bool // a rule with a holdback decided
}

func newDecideState() decideState {
	return decideState{h: xxhash.New(), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// release drops what aliases request memory.
func (ds *decideState) release() {
	ds.env = ruleEnv{}
	clear(ds.segNames)
}

// Decide decides which variant of req.Page the visitor sees. Order: bots
// and the universal holdout get the control; then the page's rules, first
// match wins; then the visitor's earlier assignment (sticky across weight
// changes and ramps); then the split by the visitor's bucket, or the
// bandit. The first randomised assignment of a visitor is stored and
// counted as an exposure; nothing else is written.
func (v *View) Decide(req *DecideRequest, out *Decision) error {
	page, ok := v.cfg.Pages[string(req.Page)]
	if !ok {
		return badParam("page", "unknown page")
	}
	ds := &v.ds
	visitor := req.Visitor
	*out = Decision{}
	if len(visitor) == 0 {
		// First visit without an id: make one.
		ds.visitor = v.e.AppendRecID(ds.visitor[:0])
		visitor, out.NewVisitor = ds.visitor, true
	}
	if err := v.e.CheckID("visitor", visitor); err != nil {
		return err
	}
	who := visitor
	if len(req.User) > 0 {
		if err := v.e.CheckID("user", req.User); err != nil {
			return err
		}
		who = req.User
	}
	variant, reason, holdout := page.control, reasonSplit, false
	switch {
	case isBot(req.UserAgent):
		reason = reasonBot
	case v.inHoldout(visitor):
		reason, holdout = reasonHoldout, true
	default:
		var err error
		if variant, reason, err = v.assign(req, page, visitor, who); err != nil {
			return err
		}
	}
	vr := page.Variants[variant]
	// 's': the randomised split (split or sticky); 'r' and 'h': a rule
	// with a holdback, its variant or the holdback; 'n': a rule without
	// one, holdout, bot or out of the experiment's traffic. The results
	// count what the store recorded for the visitor, not the flag.
	flag := byte('n')
	switch reason {
	case reasonSplit, reasonSticky:
		flag = 's'
	case reasonHoldback:
		flag = 'h'
	case reasonRule:
		if ds.measured {
			flag = 'r'
		}
	}
	day := uint16(v.now / 86400)
	id := append(ds.id[:0], page.Experiment...)
	id = append(append(id, '.'), vr.ID...)
	id = append(append(id, '.'), flag)
	id = appendHex16(id, day)
	id = v.appendSig(id, page.Experiment, vr.ID, flag, day, visitor)
	ds.id = id
	out.Page, out.Experiment, out.Variant, out.Payload = page.name, page.Experiment, vr.ID, vr.payload
	out.DecisionID, out.Reason, out.Holdout, out.Visitor = id, reason, holdout, visitor
	return nil
}

// assign runs rules, the stored assignment and the split.
func (v *View) assign(req *DecideRequest, page *Page, visitor, who []byte) (int, string, error) {
	ds := &v.ds
	ds.measured = false
	// Stored assignment first: it also tells whether the visitor returns.
	as, err := v.readAssignment(page, visitor)
	if err != nil {
		return 0, "", err
	}
	if len(page.Rules) > 0 {
		v.fillRuleEnv(req, as.found)
		var segs SegSet
		if page.segmented {
			var err error
			if segs, err = v.segmentsOf(who); err != nil {
				return 0, "", err
			}
			ds.segNames = ds.segNames[:0]
			for i, seg := range v.cfg.segments {
				if segs.has(i) {
					ds.segNames = append(ds.segNames, seg.name)
				}
			}
			ds.env.Segments = ds.segNames
		}
		if i := v.matchRule(page, segs); i >= 0 {
			r := page.Rules[i]
			if r.Holdback <= 0 {
				return r.variant, reasonRule, nil
			}
			ds.measured = true
			if heldBack(page, r, visitor) {
				return page.control, reasonHoldback, v.ruleExposure(page, r, visitor, armHoldback)
			}
			return r.variant, reasonRule, v.ruleExposure(page, r, visitor, armRule)
		}
	}
	return v.splitAssign(page, visitor, as)
}

// stored is what readAssignment found of a visitor's assignment.
type stored struct {
	variant int // the stored variant's index, -1 for none
	found   bool
	current bool // in the current phase, counted: nothing to write
	exposed bool
	at      int64 // when the record was written or renewed
	sticky  uint64
}

// assignWord is how the slot cache remembers an assignment: the
// variant's index + 1 in the low 16 bits, bit 16 exposed, and from bit 24
// the record's time (assignment.at).
func assignWord(variant int, exposed bool, at int64) uint64 {
	w := uint64(variant+1)&0xffff | uint64(max(at, 0))<<24
	if exposed {
		w |= 1 << 16
	}
	return w
}

// readAssignment reads the visitor's assignment on page: from the slot
// cache, where it is once read in the current phase (or made), since it
// never changes within a config generation; else from the store.
func (v *View) readAssignment(page *Page, visitor []byte) (stored, error) {
	ds := &v.ds
	as := stored{variant: -1, sticky: v.stickyKey(page, visitor)}
	ds.key = appendAssignKey(ds.key[:0], page.Experiment, visitor)
	if x, ok := v.e.cache.word(as.sticky); ok {
		as.variant, as.found, as.current = int(x&0xffff)-1, true, true
		as.exposed, as.at = x&(1<<16) != 0, int64(x>>24)
		return as, nil
	}
	st := v.e.state
	if st == nil {
		return as, nil
	}
	var err error
	if ds.val, as.found, err = st.AppendMeta(ds.val[:0], ds.key); err != nil || !as.found {
		return as, err
	}
	a := decodeAssignment(ds.val)
	as.variant, as.exposed, as.at = page.variant(a.variant), a.exposed, a.at
	as.current = as.variant >= 0 && a.phase == page.phase && (a.exposed || page.Exposure == "event")
	if as.current {
		v.e.cache.setWord(as.sticky, assignWord(as.variant, as.exposed, as.at))
	}
	return as, nil
}

// splitAssign answers a visitor's stored assignment, or makes one: by
// the traffic share, then the split by bucket, or the bandit; and
// records it (recordAssignment).
func (v *View) splitAssign(page *Page, visitor []byte, as stored) (int, string, error) {
	if as.current {
		if v.e.renewDue(as.at, v.now) {
			i, reason, err := v.renewAssignment(page, visitor, as)
			if errors.Is(err, index.ErrNotWritable) {
				// A renewal can wait for a store that takes writes.
				return as.variant, reasonSticky, nil
			}
			return i, reason, err
		}
		return as.variant, reasonSticky, nil
	}
	// Not stored, stored in an earlier phase, or the stored variant was
	// removed from the config: assign anew, or again.
	i := as.variant
	if i < 0 {
		if page.traffic < 1 && float64(model.Bucket(page.Seed+"/traffic", visitor)) >= page.traffic*model.Buckets {
			return page.control, reasonNotInTest, nil
		}
		if page.Mode == "bandit" {
			i = v.e.banditPick(&v.ds, page)
		} else {
			i = model.PickWeighted(page.weights, model.Bucket(page.Seed, visitor))
		}
	}
	if v.e.state != nil {
		j, err := v.recordAssignment(page, visitor, i, as.sticky)
		switch {
		case err == nil:
			i = j
		case errors.Is(err, index.ErrNotWritable):
			// The state store takes no writes (a full disk): the visitor
			// sees the variant, unrecorded, so neither exposed nor
			// converting in the results; the split's bucket gives them
			// the same one again later. The store counts the failed write.
		default:
			return 0, "", err
		}
	}
	if as.variant >= 0 {
		return i, reasonSticky, nil
	}
	return i, reasonSplit, nil
}

// renewAssignment rewrites the current assignment as of now, so the
// Sweeper keeps it while its visitor is active (retention.go); it writes
// the record back if a sweep deleted it meanwhile. Nothing is counted.
func (v *View) renewAssignment(page *Page, visitor []byte, as stored) (int, string, error) {
	ds := &v.ds
	st := v.e.state
	if st == nil {
		return as.variant, reasonSticky, nil
	}
	m := v.e.expLocks.of(visitor)
	m.Lock()
	defer m.Unlock()
	var found bool
	var err error
	if ds.val, found, err = st.AppendMeta(ds.val[:0], ds.key); err != nil {
		return 0, "", err
	}
	i, exposed := as.variant, as.exposed
	if found {
		a := decodeAssignment(ds.val)
		j := page.variant(a.variant)
		if j < 0 || a.phase != page.phase {
			// Not this phase's record (no writer makes one within a
			// config generation): leave it to the writers.
			return as.variant, reasonSticky, nil
		}
		i, exposed = j, a.exposed
	}
	ds.val = appendAssignment(ds.val[:0], []byte(page.Variants[i].ID), page.phase, exposed, v.now)
	if err := st.SetMetaAndCount(ds.key, ds.val, nil); err != nil {
		return 0, "", err
	}
	v.e.cache.setWord(as.sticky, assignWord(i, exposed, v.now))
	return i, reasonSticky, nil
}

// recordAssignment stores that visitor sees variant i of page in the
// current phase and, with exposure: decision, counts the exposure, unless
// a concurrent request did so first: then its variant is the answer.
func (v *View) recordAssignment(page *Page, visitor []byte, i int, sticky uint64) (int, error) {
	ds := &v.ds
	st := v.e.state
	m := v.e.expLocks.of(visitor)
	m.Lock()
	defer m.Unlock()
	var found bool
	var err error
	if ds.val, found, err = st.AppendMeta(ds.val[:0], ds.key); err != nil {
		return 0, err
	}
	if found {
		a := decodeAssignment(ds.val)
		if j := page.variant(a.variant); j >= 0 && a.phase == page.phase && (a.exposed || page.Exposure == "event") {
			v.e.cache.setWord(sticky, assignWord(j, a.exposed, a.at))
			return j, nil
		}
	}
	exposed := page.Exposure != "event" // else counted when the page reports it
	ds.val = appendAssignment(ds.val[:0], []byte(page.Variants[i].ID), page.phase, exposed, v.now)
	var counters []index.Counter
	if exposed {
		ds.ckey[0] = append(appendSplitKey(ds.ckey[0][:0], page.Experiment, page.phase, []byte(page.Variants[i].ID)), "exposures"...)
		ds.counters[0] = index.Counter{Key: ds.ckey[0], Delta: 1}
		// And per hour, for the traffic share over time in the results.
		ds.ckey[1] = append(append(ds.ckey[1][:0], ds.ckey[0]...), '@')
		ds.ckey[1] = strconv.AppendInt(ds.ckey[1], v.now/3600*3600, 10)
		ds.counters[1] = index.Counter{Key: ds.ckey[1], Delta: 1}
		counters = ds.counters[:2]
	}
	if err := st.SetMetaAndCount(ds.key, ds.val, counters); err != nil {
		return 0, err
	}
	v.e.cache.setWord(sticky, assignWord(i, exposed, v.now))
	return i, nil
}

// ruleCache remembers rule outcomes by a hash of the rule environment:
// most visitors share a few input tuples (no keyword, the same
// campaigns), and expr boxes every field it reads, which allocates. It
// is direct-mapped and lock-free: a slot holds the key's upper 56 bits
// and 1 + the index of the matching rule (0 for none) in its low 8 bits;
// a collision overwrites.
type ruleCache struct {
	slots [1 << 16]atomic.Uint64
}

func (c *ruleCache) get(key uint64) (int, bool) {
	s := c.slots[key&(1<<16-1)].Load()
	if s == 0 || s>>8 != key>>8 {
		return 0, false
	}
	return int(s&0xff) - 1, true
}

func (c *ruleCache) put(key uint64, match int) {
	if match+1 < 0xff {
		c.slots[key&(1<<16-1)].Store(key&^0xff | uint64(match+1))
	}
}

// matchRule returns the index of the first rule of page that holds for
// ds.env, or -1.
func (v *View) matchRule(page *Page, segs SegSet) int {
	ds := &v.ds
	e := &ds.env
	ds.h.Reset()
	for _, f := range [...]string{page.Experiment, e.Keyword, e.Ref, e.SearchEngine, e.UTMSource, e.UTMMedium, e.UTMCampaign, e.UTMTerm, e.UTMContent, e.Device} {
		_, _ = ds.h.WriteString(f)
		_, _ = ds.h.Write([]byte{0})
	}
	if e.Returning {
		_, _ = ds.h.Write([]byte{1})
	}
	var b [8]byte
	for _, w := range segs {
		binary.LittleEndian.PutUint64(b[:], w)
		_, _ = ds.h.Write(b[:])
	}
	binary.LittleEndian.PutUint64(b[:], v.cfg.gen)
	_, _ = ds.h.Write(b[:])
	key := ds.h.Sum64()
	if m, ok := v.e.rules.get(key); ok && m < len(page.Rules) {
		return m
	}
	match := -1
	for i, r := range page.Rules {
		out, err := ds.vm.Run(r.program, e)
		if err != nil {
			// A rule that fails at run time does not match.
			v.e.LogThrottled("landing-page rule failed", "page", page.name, "rule", i+1, "err", err)
			continue
		}
		if m, _ := out.(bool); m {
			match = i
			break
		}
	}
	v.e.rules.put(key, match)
	return match
}

// fillRuleEnv fills the rule environment from the request. Its strings
// alias request memory through B2S and die with the request.
func (v *View) fillRuleEnv(req *DecideRequest, returning bool) {
	ds := &v.ds
	e := &ds.env
	*e = ruleEnv{Returning: returning}
	b2s := bytesconv.B2S
	e.UTMSource = b2s(req.UTMSource)
	e.UTMMedium = b2s(req.UTMMedium)
	e.UTMCampaign = b2s(req.UTMCampaign)
	e.UTMTerm = b2s(req.UTMTerm)
	e.UTMContent = b2s(req.UTMContent)
	e.Device = device(req.UserAgent)
	host, query := splitURL(req.Ref)
	e.Ref = b2s(host)
	e.SearchEngine = searchEngine(host)
	term := req.Q
	if len(term) == 0 {
		term = req.UTMTerm
	}
	if len(term) == 0 && len(query) > 0 {
		for _, k := range [...]string{"q", "p", "wd", "text", "query"} {
			var found bool
			if ds.refVal, found = queryValue(ds.refVal[:0], query, k); found && len(ds.refVal) > 0 {
				term = ds.refVal
				break
			}
		}
	}
	ds.keyword = normalizeKeyword(ds.keyword[:0], term)
	e.Keyword = b2s(ds.keyword)
}

// appendDecisionSig appends 16 hex digits of HMAC-SHA256 over the
// decision (experiment, variant, flag, visitor) under the signing key. A
// browser can then report a conversion with navigator.sendBeacon, which
// cannot send an API key: the signature proves the decision_id came from
// this engine for this visitor.
func (e *Engine) appendDecisionSig(dst []byte, ds *decideState, exp, variant string, flag byte, day uint16, visitor []byte) []byte {
	if ds.mac == nil {
		ds.mac = hmac.New(sha256.New, e.o.SignKey)
	}
	m := append(ds.msg[:0], exp...)
	m = append(append(m, 0), variant...)
	m = append(m, 0, flag, 0, byte(day>>8), byte(day), 0)
	m = append(m, visitor...)
	ds.msg = m
	ds.mac.Reset()
	_, _ = ds.mac.Write(m)
	ds.sum = ds.mac.Sum(ds.sum[:0])
	for _, c := range ds.sum[:8] {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// appendSig appends the decision's signature (appendDecisionSig),
// remembered once made: it never changes.
func (v *View) appendSig(dst []byte, exp, variant string, flag byte, day uint16, visitor []byte) []byte {
	k := &v.key
	k.start(keySig)
	k.str(exp)
	k.str(variant)
	k.u64(uint64(flag)<<16 | uint64(day))
	k.bytes(visitor)
	key := k.sum()
	if x, ok := v.e.cache.word(key); ok {
		for i := 56; i >= 0; i -= 8 {
			c := byte(x >> uint(i))
			dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
		}
		return dst
	}
	dst = v.e.appendDecisionSig(dst, &v.ds, exp, variant, flag, day, visitor)
	v.e.cache.setWord(key, binary.BigEndian.Uint64(v.ds.sum[:8]))
	return dst
}

// stickyKey keys the remembered assignment of visitor on page; the
// config generation is in it, as the variant is kept by its index.
func (v *View) stickyKey(page *Page, visitor []byte) uint64 {
	k := &v.key
	k.start(keySticky)
	k.str(page.Experiment)
	k.bytes(visitor)
	k.u64(v.cfg.gen)
	return k.sum()
}

// verifyDecision reports whether decisionID was signed by this engine
// for visitor within Options.DecisionTTL, and returns its experiment and
// variant.
func (v *View) verifyDecision(decisionID, visitor []byte) (exp, variant []byte, ok bool) {
	exp, variant, tail, ok := splitDecisionID(decisionID)
	if !ok || len(tail) != 1+4+16 {
		return nil, nil, false
	}
	day, ok := parseHex16(tail[1:5])
	today := v.now / 86400
	if !ok || int64(day) > today+1 || (today-int64(day))*86400 > int64(v.e.o.DecisionTTL/time.Second) {
		return nil, nil, false
	}
	ds := &v.ds
	sig := v.e.appendDecisionSig(ds.sig[:0], ds, string(exp), string(variant), tail[0], day, visitor)
	ds.sig = sig
	return exp, variant, hmac.Equal(sig, tail[5:])
}

// splitDecisionID splits "exp.variant.<flag><day><signature>" into
// experiment, variant and the rest (empty when there is no second dot);
// ok is false when there is no dot at all.
func splitDecisionID(id []byte) (exp, variant, tail []byte, ok bool) {
	exp, rest, ok := bytes.Cut(id, []byte("."))
	if !ok {
		return nil, nil, nil, false
	}
	variant, tail, _ = bytes.Cut(rest, []byte("."))
	return exp, variant, tail, true
}

func appendHex16(dst []byte, x uint16) []byte {
	return append(dst, hexDigits[x>>12], hexDigits[x>>8&0xf], hexDigits[x>>4&0xf], hexDigits[x&0xf])
}

func parseHex16(b []byte) (uint16, bool) {
	var x uint16
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			x = x<<4 | uint16(c-'0')
		case c >= 'a' && c <= 'f':
			x = x<<4 | uint16(c-'a'+10)
		default:
			return 0, false
		}
	}
	return x, true
}

// banditArms are an experiment's counts as the bandit sees them,
// refreshed from the state store's counters at most every
// Options.BanditRefresh.
type banditArms struct {
	mu   sync.Mutex
	at   time.Time
	arms []model.ArmStats
}

// banditPick chooses the variant of a new visitor by Thompson sampling
// over the variants with a positive weight.
func (e *Engine) banditPick(ds *decideState, page *Page) int {
	x, _ := e.bandits.LoadOrStore(page.Experiment, &banditArms{})
	ba := x.(*banditArms)
	ds.arms, ds.armIdx = ds.arms[:0], ds.armIdx[:0]
	ba.mu.Lock()
	if time.Since(ba.at) > e.o.BanditRefresh || len(ba.arms) != len(page.Variants) {
		ba.arms = e.readArms(page, ba.arms[:0])
		ba.at = time.Now()
	}
	for i, a := range ba.arms {
		if page.Variants[i].Weight > 0 {
			ds.arms = append(ds.arms, a)
			ds.armIdx = append(ds.armIdx, i)
		}
	}
	ba.mu.Unlock()
	if len(ds.armIdx) == 0 {
		return page.control
	}
	return ds.armIdx[model.Bandit{BurnIn: page.BurnIn, MinShare: page.MinShare}.Pick(ds.arms, ds.rng)]
}

// readArms reads every variant's exposures and converters of the primary
// goal in the current phase.
func (e *Engine) readArms(page *Page, dst []model.ArmStats) []model.ArmStats {
	for _, vr := range page.Variants {
		var a model.ArmStats
		if e.state != nil {
			a = e.armStats(appendSplitKey(nil, page.Experiment, page.phase, []byte(vr.ID)), page.Goals[page.primary].ID)
		}
		dst = append(dst, a)
	}
	return dst
}
