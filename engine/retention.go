package engine

// Retention: what the state store keeps, and for how long. The index's
// Sweeper deletes the event log, history entries and profiles by their
// TTLs (index/retention.go); the engine adds rules for its own records:
//
//   - Assignments ("as/…") and rule records ("rx/…") carry the time they
//     were written or renewed. A decision renews a visitor's record once
//     it is older than a renewal interval (an eighth of the shorter of
//     the two assignment TTLs, at most a day), so a returning visitor
//     keeps their variant: a record goes only once its visitor has had
//     no decision and no exposure event for the TTL. Since the
//     renewal lags by up to one interval, the sweeper waits that long
//     beyond the TTL too, so it never deletes the record of a visitor
//     active within the TTL. A visitor with no profile (no event under
//     their id) is anonymous: Retention.Anonymous; others
//     Retention.Assignments.
//   - Conversion markers ("xc/…") go when their phase is no longer the
//     experiment's current one (no conversion counts there any more), or
//     when they are older than the assignment TTL and the visitor has no
//     record left in the experiment: a visitor who returns after that
//     counts as new, as their assignment does.
//   - Event-id markers ("ei/…") go Retention.EventIDs after the event
//     arrived: that is the window in which a repeated event_id is
//     acknowledged and not counted twice.
//
// Records written before retention hold no time: they count as written
// at the store's retention epoch (index.Sweeper.Epoch), and event-id
// markers by the event's time.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/edgerec/edgerec/index"
)

// Defaults for edgerec serve's retention flags. A library user's zero
// Retention keeps everything.
const (
	DefaultRetentionEvents      = 90 * 24 * time.Hour
	DefaultRetentionHistories   = 180 * 24 * time.Hour
	DefaultRetentionProfiles    = 365 * 24 * time.Hour
	DefaultRetentionAssignments = 90 * 24 * time.Hour
	DefaultRetentionAnonymous   = DefaultDecisionTTL
	DefaultRetentionEventIDs    = 7 * 24 * time.Hour
	DefaultSweepInterval        = 10 * time.Minute
)

// Kinds of records the engine's retention rules delete, as
// index.SweepStats names them (besides index.KindEvents, KindHistories
// and KindProfiles).
const (
	KindAssignments = "assignments"
	KindAnonymous   = "anonymous"
	KindConversions = "conversions"
	KindEventIDs    = "event_ids"
)

// maxRenewal bounds the renewal interval of assignments.
const maxRenewal = 24 * 3600

// Retention sets how long the state store keeps each kind of data; a
// zero TTL keeps it forever, and a zero Retention runs no sweeper.
type Retention struct {
	// Events: the event log, after an event arrived.
	Events time.Duration
	// Histories: history entries, after the event's time.
	Histories time.Duration
	// Profiles: a profile, after its last event.
	Profiles time.Duration
	// Assignments: experiment records of a visitor with events, after
	// their last decision or exposure.
	Assignments time.Duration
	// Anonymous: experiment records of a visitor without events.
	Anonymous time.Duration
	// EventIDs: the window in which a repeated event_id is not counted
	// twice.
	EventIDs time.Duration
	// Interval is the time between sweeps; default DefaultSweepInterval,
	// negative: none in the background (call Engine.Sweep).
	Interval time.Duration
	// BatchKeys, Pause and CompactBytes pace the sweeper; see
	// index.SweepOptions.
	BatchKeys    int
	Pause        time.Duration
	CompactBytes int64
}

func (r *Retention) enabled() bool {
	return r.Events > 0 || r.Histories > 0 || r.Profiles > 0 || r.Assignments > 0 || r.Anonymous > 0 || r.EventIDs > 0
}

// Validate reports a TTL that cannot work: negative, or under a minute.
func (r *Retention) Validate() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"events", r.Events}, {"histories", r.Histories}, {"profiles", r.Profiles},
		{"assignments", r.Assignments}, {"anonymous", r.Anonymous}, {"event ids", r.EventIDs}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Minute) {
			return fmt.Errorf("retention of %s %v: want 0 (forever) or a minute or more", d.name, d.v)
		}
	}
	return nil
}

// renewal is how old (seconds) an assignment may get before a decision
// renews it; 0: never (assignments are kept forever).
func (r *Retention) renewal() int64 {
	var ttl time.Duration
	for _, d := range [...]time.Duration{r.Assignments, r.Anonymous} {
		if d > 0 && (ttl == 0 || d < ttl) {
			ttl = d
		}
	}
	return min(int64(ttl/time.Second)/8, maxRenewal)
}

// renewDue reports whether a decision renews a record written at at.
func (e *Engine) renewDue(at, now int64) bool {
	return e.renewal > 0 && now-at >= e.renewal
}

// startSweeper makes the store's sweeper with the engine's rules and runs
// it in the background, unless Retention.Interval is negative.
func (e *Engine) startSweeper() error {
	r := &e.o.Retention
	e.renewal = r.renewal()
	if e.state == nil || !r.enabled() {
		return nil
	}
	sw, err := e.state.NewSweeper(index.SweepOptions{
		Events: r.Events, Histories: r.Histories, Profiles: r.Profiles, Meta: e.retentionRules(),
		BatchKeys: r.BatchKeys, Pause: r.Pause, CompactBytes: r.CompactBytes,
	})
	if err != nil {
		return err
	}
	e.sweeper = sw
	if r.Interval < 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.stopSweeper = cancel
	e.sweeperDone = make(chan struct{})
	go func() {
		defer close(e.sweeperDone)
		sw.Run(ctx, cmpOr(r.Interval, DefaultSweepInterval))
	}()
	return nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Sweep runs one retention pass now; nothing without a Retention.
func (e *Engine) Sweep(ctx context.Context) error {
	if e.sweeper == nil {
		return nil
	}
	return e.sweeper.Sweep(ctx)
}

// RetentionStats returns what the sweeper deleted; ok is false without
// one.
func (e *Engine) RetentionStats() (st index.SweepStats, ok bool) {
	if e.sweeper == nil {
		return st, false
	}
	return e.sweeper.Stats(), true
}

// retentionRules are the engine's rules for its metadata records.
func (e *Engine) retentionRules() []index.MetaRule {
	r := &e.o.Retention
	var rules []index.MetaRule
	if r.Assignments > 0 || r.Anonymous > 0 {
		rules = append(rules,
			index.MetaRule{Prefix: "as/", Expired: e.assignmentExpired, Lock: e.lockKeys(2)},
			index.MetaRule{Prefix: "rx/", Expired: e.ruleRecordExpired, Lock: e.lockKeys(3)})
	}
	// After the visitors' records, whose absence it looks for.
	rules = append(rules, index.MetaRule{Prefix: "xc/", Expired: e.conversionExpired, Lock: e.lockKeys(4)})
	if r.EventIDs > 0 {
		rules = append(rules, index.MetaRule{Prefix: "ei/", Expired: e.eventIDExpired, Lock: e.lockKeys(1)})
	}
	return rules
}

// keyTail returns what follows the n-th '/' of key: the visitor of an
// experiment record (ids of experiments, rules and goals hold no '/';
// visitors may), or nil.
func keyTail(key []byte, n int) []byte {
	for range n {
		i := bytes.IndexByte(key, '/')
		if i < 0 {
			return nil
		}
		key = key[i+1:]
	}
	return key
}

// lockKeys locks the experiment stripes of the visitors (or event ids)
// after the n-th '/' of keys, as expWrite.lock does.
func (e *Engine) lockKeys(n int) func(keys [][]byte) func() {
	return func(keys [][]byte) func() {
		held := make([]int, 0, len(keys))
		for _, k := range keys {
			held = append(held, e.expLocks.index(keyTail(k, n)))
		}
		slices.Sort(held)
		held = slices.Compact(held)
		for _, i := range held {
			e.expLocks[i].Lock()
		}
		return func() {
			for _, i := range held {
				e.expLocks[i].Unlock()
			}
		}
	}
}

// visitorExpired judges a visitor's experiment record written at at.
func (e *Engine) visitorExpired(visitor []byte, at, now, epoch int64) string {
	r := &e.o.Retention
	if at == 0 {
		at = epoch
	}
	idle := now - at - e.renewal
	if r.Anonymous > 0 && idle > int64(r.Anonymous/time.Second) {
		if has, err := e.state.HasProfile(visitor); err == nil && !has {
			return KindAnonymous
		}
	}
	if r.Assignments > 0 && idle > int64(r.Assignments/time.Second) {
		return KindAssignments
	}
	return ""
}

func (e *Engine) assignmentExpired(key, value []byte, now, epoch int64) string {
	v := keyTail(key, 2)
	if len(v) == 0 {
		return ""
	}
	return e.visitorExpired(v, decodeAssignment(value).at, now, epoch)
}

func (e *Engine) ruleRecordExpired(key, value []byte, now, epoch int64) string {
	v := keyTail(key, 3)
	if len(v) == 0 {
		return ""
	}
	_, _, at, _ := decodeRuleRecord(value)
	return e.visitorExpired(v, at, now, epoch)
}

// expPage returns the page of experiment exp in the current config, or nil.
func (e *Engine) expPage(exp []byte) *Page {
	var page *Page
	e.cfg.Load().experiments(func(p *Page) {
		if page == nil && p.Experiment == string(exp) {
			page = p
		}
	})
	return page
}

func (e *Engine) conversionExpired(key, value []byte, now, epoch int64) string {
	rest := key[len("xc/"):]
	exp, rest, _ := bytes.Cut(rest, []byte("/"))
	ph, rest, _ := bytes.Cut(rest, []byte("/"))
	_, visitor, ok := bytes.Cut(rest, []byte("/"))
	phase, err := strconv.ParseUint(string(ph), 10, 64)
	if !ok || err != nil || len(visitor) == 0 {
		return ""
	}
	page := e.expPage(exp)
	if page != nil && phase != page.phase {
		return KindConversions
	}
	r := &e.o.Retention
	ttl := max(r.Assignments, r.Anonymous)
	if ttl == 0 {
		return ""
	}
	at := epoch
	if len(value) > 8 {
		if x, n := binary.Uvarint(value[8:]); n > 0 {
			at = int64(x)
		}
	}
	if now-at-e.renewal <= int64(ttl/time.Second) {
		return ""
	}
	// Kept while the visitor has a record in the experiment: a second
	// conversion would count as a first.
	if _, has, err := e.state.AppendMeta(nil, appendAssignKey(nil, string(exp), visitor)); err != nil || has {
		return ""
	}
	if page != nil {
		for _, ri := range page.holdbacks {
			if _, has, err := e.state.AppendMeta(nil, appendRuleKey(nil, page.Experiment, page.Rules[ri].ID, visitor)); err != nil || has {
				return ""
			}
		}
	}
	return KindConversions
}

func (e *Engine) eventIDExpired(_, value []byte, now, _ int64) string {
	at, n := binary.Varint(value)
	if n <= 0 {
		return ""
	}
	if arrived, m := binary.Varint(value[n:]); m > 0 {
		at = arrived
	}
	if now-at > int64(e.o.Retention.EventIDs/time.Second) {
		return KindEventIDs
	}
	return ""
}
