package engine

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Config is the structured configuration of edgerec.yaml: placements,
// landing pages with their experiments, and the universal holdout.
type Config struct {
	Placements map[string]*Placement `yaml:"placements"`
	Pages      map[string]*Page      `yaml:"pages"`
	// Holdout is the share of visitors who always get every page's
	// control and popular recommendations, to measure personalisation as a
	// whole.
	Holdout float64 `yaml:"holdout"`
	// Profiles and Segments: see segment.go.
	Profiles Profiles            `yaml:"profiles"`
	Segments map[string]*Segment `yaml:"segments"`

	segments     []*Segment // sorted by name; a SegSet indexes them
	segmentIndex map[string]int
	gen          uint64 // set by Engine.SetConfig
	// placementExps are the experiments of placements with variants, by
	// experiment id.
	placementExps map[string]*Page
}

// Placement names the strategy, filters and business rules of one place on
// a page, like a "scenario" or "serving config" in hosted recommenders.
type Placement struct {
	// Strategy: similar (the context item's similar items, blended with the
	// visitor's history), bought_together (the item's or cart's baskets),
	// personal (the visitor's history), popular, trending.
	Strategy string `yaml:"strategy"`
	// HistoryWeight scales the visitor's history in similar and personal
	// strategies; default 1. 0 ignores history (but seen items are still
	// filtered as ExcludeSeen says).
	HistoryWeight *float64 `yaml:"history_weight"`
	// ExcludeSeen: all (default: every item in the visitor's history),
	// purchased (only purchased items), none.
	ExcludeSeen string `yaml:"exclude_seen"`
	// K is the default list length of this placement.
	K int `yaml:"k"`
	// MaxPerCategory caps the items of one (first) category; 0: no cap.
	MaxPerCategory int `yaml:"max_per_category"`
	// Boost multiplies the score of matching items by Factor; Bury moves
	// matching items after all others; Pin puts an item at a position.
	Boost []Rule `yaml:"boost"`
	Bury  []Rule `yaml:"bury"`
	Pin   []Pin  `yaml:"pin"`
	// Exclude and Only are filters: an item matching an exclude rule is
	// never shown; when only rules apply, an item must match one of them.
	// Both hold for the popular items that fill a short list too.
	Exclude []Rule `yaml:"exclude"`
	Only    []Rule `yaml:"only"`
	// Variants make the placement an experiment (id Experiment, default
	// the placement's name) between versions of it: each visitor sees one,
	// assigned sticky by their bucket (mode: split) or by Thompson
	// sampling on clicks (mode: bandit). A visitor is exposed when first
	// served in a phase; goals are "click" (primary: a click on the
	// placement's items) and "purchase" (a purchase or conversion that
	// carries the placement and its rec_id).
	Experiment string              `yaml:"experiment"`
	Mode       string              `yaml:"mode"`
	BurnIn     float64             `yaml:"burn_in"`
	MinShare   float64             `yaml:"min_share"`
	Variants   []*PlacementVariant `yaml:"variants"`

	exp       *Page        // the experiment, when Variants
	versions  []*Placement // a placement per variant
	cacheName string       // the name answers are cached under
	variant   string       // the variant this version is

	name      string
	strategy  placementKind
	seen      seenPolicy
	histW     float64
	segmented bool       // a rule or pin depends on the visitor's segments
	segList   []*Segment // the segments rules and pins index
	holdout   *Placement // what the universal holdout sees here
}

// PlacementVariant is one version of a placement in its experiment: what
// it sets replaces the placement's; its boost, bury, pin and filters are
// the placement's.
type PlacementVariant struct {
	ID             string   `yaml:"id"`
	Weight         float64  `yaml:"weight"`
	Strategy       string   `yaml:"strategy"`
	HistoryWeight  *float64 `yaml:"history_weight"`
	ExcludeSeen    string   `yaml:"exclude_seen"`
	K              int      `yaml:"k"`
	MaxPerCategory int      `yaml:"max_per_category"`
}

// Rule matches items by category or id.
// With Segment set, the rule applies only to the segment's members.
type Rule struct {
	Category string  `yaml:"category"`
	Item     string  `yaml:"item"`
	Factor   float64 `yaml:"factor"`
	Segment  string  `yaml:"segment"`

	seg int // 1 + the segment's index; 0: everyone
}

// Pin places Item at Position (1-based) when it is in stock.
// With Segment set, only the segment's members see the pin.
type Pin struct {
	Item     string `yaml:"item"`
	Position int    `yaml:"position"`
	Segment  string `yaml:"segment"`

	seg int
}

type seenPolicy uint8

// parseSeen reads an exclude_seen setting; "" is all.
func parseSeen(s string) (seenPolicy, bool) {
	switch s {
	case "", "all":
		return seenAll, true
	case "purchased":
		return seenPurchased, true
	case "none":
		return seenNone, true
	}
	return 0, false
}

const (
	seenAll seenPolicy = iota
	seenPurchased
	seenNone
)

type placementKind uint8

const (
	strategySimilar placementKind = iota + 1
	strategyBought
	strategyPersonal
	strategyPopular
	strategyTrending
)

var strategies = map[string]placementKind{
	"similar": strategySimilar, "bought_together": strategyBought, "personal": strategyPersonal,
	"popular": strategyPopular, "trending": strategyTrending,
}

// DefaultConfig holds the built-in placements, used without a file and
// merged under a file's own.
func DefaultConfig() *Config {
	one, half := 1.0, 0.5
	c := &Config{Placements: map[string]*Placement{
		"product_page": {Strategy: "similar", HistoryWeight: &half, ExcludeSeen: "purchased"},
		"cart":         {Strategy: "bought_together", ExcludeSeen: "purchased"},
		"home":         {Strategy: "personal", HistoryWeight: &one},
		"email":        {Strategy: "personal", HistoryWeight: &one},
		"popular":      {Strategy: "popular"},
	}}
	if err := c.validateSegments(func(path, msg string) error { return fmt.Errorf("%s: %s", path, msg) }); err != nil {
		panic("BUG: default config: " + err.Error())
	}
	if err := c.validate(nil); err != nil {
		panic("BUG: default config: " + err.Error())
	}
	return c
}

// LoadConfig reads and validates a configuration file; errors name the
// file and line. The built-in placements are kept unless the file
// redefines them.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config %q: %w", path, err)
	}
	return ParseConfig(data, path)
}

// ParseConfig parses configuration bytes; name is used in errors.
func ParseConfig(data []byte, name string) (*Config, error) {
	var c Config
	if err := unmarshalConfig(data, &c); err != nil {
		// go-yaml says "[line:col] message"; say "name:line:col: message".
		msg := strings.TrimSpace(yaml.FormatError(err, false, false))
		if pos, rest, ok := strings.Cut(strings.TrimPrefix(msg, "["), "] "); ok && strings.HasPrefix(msg, "[") {
			return nil, fmt.Errorf("%s:%s: %s", name, pos, rest)
		}
		if l := positionlessLine(data, err); l > 0 {
			return nil, fmt.Errorf("%s:%d: %s", name, l, msg)
		}
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	at := func(path string, msg string) error {
		return fmt.Errorf("%s:%d: %s", name, yamlLine(file, path), msg)
	}
	if err := c.validateSegments(at); err != nil {
		return nil, err
	}
	if err := c.validate(at); err != nil {
		return nil, err
	}
	if err := c.validatePages(at); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	for k, p := range c.Placements {
		d.Placements[k] = p
	}
	d.Pages, d.Holdout = c.Pages, c.Holdout
	d.Profiles, d.Segments, d.segments, d.segmentIndex = c.Profiles, c.Segments, c.segments, c.segmentIndex
	d.placementExps = c.placementExps
	return d, nil
}

// errDecodePanic is a panic of the YAML decoder, recovered.
type errDecodePanic struct{ v any }

func (e errDecodePanic) Error() string {
	return fmt.Sprintf("cannot decode a tagged value (the YAML decoder failed: %v)", e.v)
}

// unmarshalConfig decodes data into c. go-yaml v1.19.2 panics on a tagged
// scalar where a list is expected ("windows: !x 1d"; FuzzParseConfig,
// crash-tagged-scalar-list): a config file must not bring down a server
// that reloads it, so the panic is an error here.
func unmarshalConfig(data []byte, c *Config) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errDecodePanic{r}
		}
	}()
	return yaml.UnmarshalWithOptions(data, c, yaml.DisallowUnknownField())
}

// validate checks every placement and fills its derived fields; at reports
// an error at a YAML path.
func (c *Config) validate(at func(path, msg string) error) error {
	if at == nil {
		at = func(path, msg string) error { return fmt.Errorf("%s: %s", path, msg) }
	}
	names := make([]string, 0, len(c.Placements))
	for n := range c.Placements {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := c.Placements[n]
		base := "$.placements." + pathKey(n)
		if p == nil {
			return at(base, fmt.Sprintf("placement %q is empty: give at least a strategy", n))
		}
		if n == "" || len(n) > 64 || strings.ContainsAny(n, "/?&# ") {
			return at(base, fmt.Sprintf("bad placement name %q", n))
		}
		p.name = n
		k, ok := strategies[p.Strategy]
		if !ok {
			return at(base+".strategy", fmt.Sprintf("placement %q: unknown strategy %q: want similar, bought_together, personal, popular or trending", n, p.Strategy))
		}
		p.strategy = k
		if p.seen, ok = parseSeen(p.ExcludeSeen); !ok {
			return at(base+".exclude_seen", fmt.Sprintf("placement %q: exclude_seen %q: want all, purchased or none", n, p.ExcludeSeen))
		}
		p.histW = 1
		if p.HistoryWeight != nil {
			if *p.HistoryWeight < 0 {
				return at(base+".history_weight", fmt.Sprintf("placement %q: history_weight must be >= 0", n))
			}
			p.histW = *p.HistoryWeight
		}
		if p.K < 0 || p.MaxPerCategory < 0 {
			return at(base, fmt.Sprintf("placement %q: k and max_per_category must be >= 0", n))
		}
		segOf := func(path, seg string) (int, error) {
			if seg == "" {
				return 0, nil
			}
			i, ok := c.segmentIndex[seg]
			if !ok {
				return 0, at(path+".segment", fmt.Sprintf("placement %q: unknown segment %q", n, seg))
			}
			return i + 1, nil
		}
		var err error
		for i := range p.Boost {
			r := &p.Boost[i]
			path := fmt.Sprintf("%s.boost[%d]", base, i)
			if (r.Category == "") == (r.Item == "") || r.Factor <= 0 {
				return at(path, fmt.Sprintf("placement %q: a boost needs one of category or item, and a factor > 0", n))
			}
			if r.seg, err = segOf(path, r.Segment); err != nil {
				return err
			}
		}
		for i := range p.Bury {
			r := &p.Bury[i]
			path := fmt.Sprintf("%s.bury[%d]", base, i)
			if (r.Category == "") == (r.Item == "") {
				return at(path, fmt.Sprintf("placement %q: a bury rule needs one of category or item", n))
			}
			if r.seg, err = segOf(path, r.Segment); err != nil {
				return err
			}
		}
		for _, f := range [...]struct {
			kind  string
			rules []Rule
		}{{"exclude", p.Exclude}, {"only", p.Only}} {
			for i := range f.rules {
				r := &f.rules[i]
				path := fmt.Sprintf("%s.%s[%d]", base, f.kind, i)
				if (r.Category == "") == (r.Item == "") || r.Factor != 0 {
					return at(path, fmt.Sprintf("placement %q: an %s rule needs one of category or item, and no factor", n, f.kind))
				}
				if r.seg, err = segOf(path, r.Segment); err != nil {
					return err
				}
			}
		}
		for i := range p.Pin {
			pin := &p.Pin[i]
			path := fmt.Sprintf("%s.pin[%d]", base, i)
			if pin.Item == "" || pin.Position < 1 {
				return at(path, fmt.Sprintf("placement %q: a pin needs an item and a position >= 1", n))
			}
			if pin.seg, err = segOf(path, pin.Segment); err != nil {
				return err
			}
		}
		p.segList = c.segments
		p.segmented = segmentedRules(p.Boost, p.Bury, p.Exclude, p.Only)
		for _, pin := range p.Pin {
			p.segmented = p.segmented || pin.seg > 0
		}
		// The universal holdout sees popular items, unpersonalised, but
		// within the placement's filters: those are not personalisation.
		p.holdout = &Placement{name: "holdout", Strategy: "popular", strategy: strategyPopular,
			Exclude: p.Exclude, Only: p.Only, segList: p.segList, segmented: segmentedRules(p.Exclude, p.Only)}
		p.cacheName = n
		if err := c.validatePlacementVariants(p, base, at); err != nil {
			return err
		}
	}
	return nil
}

// segmentedRules reports whether any of the rules is for a segment only.
func segmentedRules(lists ...[]Rule) bool {
	for _, rs := range lists {
		for _, r := range rs {
			if r.seg > 0 {
				return true
			}
		}
	}
	return false
}

// SegmentNames lists the segments, sorted.
func (c *Config) SegmentNames() []string { return sortedKeys(c.Segments) }

// PageNames lists the landing pages, sorted.
func (c *Config) PageNames() []string { return sortedKeys(c.Pages) }

// Names lists the placements, sorted.
func (c *Config) Names() []string {
	ns := make([]string, 0, len(c.Placements))
	for n := range c.Placements {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

func (c *Config) names() string { return strings.Join(c.Names(), ", ") }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// validatePlacementVariants makes a version of p per variant, and the
// experiment that assigns them.
func (c *Config) validatePlacementVariants(p *Placement, base string, at func(path, msg string) error) error {
	p.exp, p.versions = nil, nil
	if len(p.Variants) == 0 {
		if p.Experiment != "" || p.Mode != "" {
			return at(base+".variants", fmt.Sprintf("placement %q: an experiment needs variants", p.name))
		}
		return nil
	}
	if p.Experiment == "" {
		p.Experiment = p.name
	}
	exp := &Page{Experiment: p.Experiment, Mode: p.Mode, BurnIn: p.BurnIn, MinShare: p.MinShare,
		Goals: []*Goal{{ID: goalClick, Primary: true}, {ID: goalPurchase}}, name: p.name, placement: true}
	for i, pv := range p.Variants {
		vp := fmt.Sprintf("%s.variants[%d]", base, i)
		if pv == nil {
			return at(vp, fmt.Sprintf("placement %q: empty variant", p.name))
		}
		exp.Variants = append(exp.Variants, &Variant{ID: pv.ID, Weight: pv.Weight})
		v := *p
		v.Variants, v.versions, v.exp = nil, nil, nil
		v.variant, v.cacheName = pv.ID, p.name+"#"+pv.ID
		if pv.Strategy != "" {
			k, ok := strategies[pv.Strategy]
			if !ok {
				return at(vp+".strategy", fmt.Sprintf("placement %q: variant %q: unknown strategy %q", p.name, pv.ID, pv.Strategy))
			}
			v.Strategy, v.strategy = pv.Strategy, k
		}
		if pv.ExcludeSeen != "" {
			var ok bool
			if v.seen, ok = parseSeen(pv.ExcludeSeen); !ok {
				return at(vp+".exclude_seen", fmt.Sprintf("placement %q: variant %q: exclude_seen %q: want all, purchased or none", p.name, pv.ID, pv.ExcludeSeen))
			}
		}
		if pv.HistoryWeight != nil {
			if *pv.HistoryWeight < 0 {
				return at(vp+".history_weight", fmt.Sprintf("placement %q: variant %q: history_weight must be >= 0", p.name, pv.ID))
			}
			v.histW = *pv.HistoryWeight
		}
		if pv.K < 0 || pv.MaxPerCategory < 0 {
			return at(vp, fmt.Sprintf("placement %q: variant %q: k and max_per_category must be >= 0", p.name, pv.ID))
		}
		if pv.K > 0 {
			v.K = pv.K
		}
		if pv.MaxPerCategory > 0 {
			v.MaxPerCategory = pv.MaxPerCategory
		}
		p.versions = append(p.versions, &v)
	}
	if err := exp.validateSplit(base, at); err != nil {
		return err
	}
	p.exp = exp
	for _, v := range p.versions {
		v.exp = exp
	}
	if c.placementExps == nil {
		c.placementExps = map[string]*Page{}
	}
	if other, dup := c.placementExps[exp.Experiment]; dup {
		return at(base+".experiment", fmt.Sprintf("placement %q: experiment %q is already on placement %q", p.name, exp.Experiment, other.name))
	}
	c.placementExps[exp.Experiment] = exp
	return nil
}

// pathKey writes a mapping key of the config (a placement, page or
// segment name, which may hold any character) into a path for
// yamlLine: as it is when plain, else single-quoted with \ escapes.
func pathKey(k string) string {
	if k != "" && !strings.ContainsAny(k, `.[]'\`) {
		return k
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(k) + "'"
}

// yamlLine returns the line of the node at path ("$.pages.lp.rules[0].if",
// keys quoted by pathKey) in the first document of file, or, where the
// path leads to nothing (a field left out, a name the path cannot find),
// the line of the deepest node on its way: an error names at least the
// entry it is about. Aliases, anchors, tags and merge keys (<<) are
// followed as the decoder follows them. It is not go-yaml's
// PathString/FilterFile, which cannot find names holding a dot or a
// quote, nor look through aliases and merge keys.
func yamlLine(file *ast.File, path string) int {
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return 1
	}
	anchors := map[string]ast.Node{}
	collectAnchors(file.Docs[0].Body, anchors)
	n := file.Docs[0].Body
	line := tokenLine(n, 1)
	p := strings.TrimPrefix(path, "$")
	for p != "" {
		n = derefYAML(n, anchors)
		switch {
		case p[0] == '[':
			end := strings.IndexByte(p, ']')
			i, err := strconv.Atoi(p[1:max(end, 1)])
			seq, ok := n.(*ast.SequenceNode)
			if end < 0 || err != nil || !ok || i < 0 || i >= len(seq.Values) {
				return line
			}
			n, p = seq.Values[i], p[end+1:]
			line = tokenLine(n, line)
		case p[0] == '.':
			var key string
			key, p = cutPathKey(p[1:])
			mv := mappingValue(n, key, anchors, 0)
			if mv == nil {
				return line
			}
			n = mv.Value
			// The value's line, as an error about it names it; the key's
			// when the value is left empty.
			line = tokenLine(mv.Key, line)
			if _, null := n.(*ast.NullNode); n != nil && !null {
				line = tokenLine(n, line)
			}
		default:
			return line
		}
	}
	return line
}

// cutPathKey cuts the key at the start of p (after its '.') and returns it
// and the rest of the path.
func cutPathKey(p string) (key, rest string) {
	if !strings.HasPrefix(p, "'") {
		i := strings.IndexAny(p, ".[")
		if i < 0 {
			return p, ""
		}
		return p[:i], p[i:]
	}
	var b strings.Builder
	for i := 1; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteByte(p[i])
		case c == '\'':
			return b.String(), p[i+1:]
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// mappingValue returns the entry of the mapping n with key, its own
// entries first, then those of its merge keys.
func mappingValue(n ast.Node, key string, anchors map[string]ast.Node, depth int) *ast.MappingValueNode {
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		return nil
	}
	for _, mv := range values {
		if !mv.Key.IsMergeKey() && keyText(mv.Key, anchors) == key {
			return mv
		}
	}
	if depth > 16 {
		return nil
	}
	for _, mv := range values {
		if !mv.Key.IsMergeKey() {
			continue
		}
		merged := derefYAML(mv.Value, anchors)
		if seq, ok := merged.(*ast.SequenceNode); ok {
			for _, e := range seq.Values {
				if found := mappingValue(derefYAML(e, anchors), key, anchors, depth+1); found != nil {
					return found
				}
			}
		} else if found := mappingValue(merged, key, anchors, depth+1); found != nil {
			return found
		}
	}
	return nil
}

// keyText is a mapping key as the decoder reads it into a map[string]….
func keyText(k ast.Node, anchors map[string]ast.Node) string {
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		k = mk.Value
	}
	switch x := derefYAML(k, anchors).(type) {
	case *ast.StringNode:
		return x.Value
	case nil:
		return ""
	default:
		if t := x.GetToken(); t != nil {
			return t.Value
		}
	}
	return ""
}

// derefYAML looks through anchors, aliases and tags to the node they stand
// for.
func derefYAML(n ast.Node, anchors map[string]ast.Node) ast.Node {
	for range 16 {
		switch x := n.(type) {
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.AliasNode:
			if x.Value == nil {
				return n
			}
			a, ok := anchors[x.Value.GetToken().Value]
			if !ok {
				return n
			}
			n = a
		default:
			return n
		}
	}
	return n
}

// collectAnchors records the anchors under n by name; a later one
// replaces an earlier, as in the decoder.
func collectAnchors(n ast.Node, anchors map[string]ast.Node) {
	walkYAML(n, 0, func(n ast.Node, _ int) {
		if x, ok := n.(*ast.AnchorNode); ok && x.Name != nil {
			anchors[x.Name.GetToken().Value] = x.Value
		}
	})
}

// walkYAML calls fn for n and every node under it, in document order,
// with its depth.
func walkYAML(n ast.Node, depth int, fn func(n ast.Node, depth int)) {
	if n == nil || depth > 100_000 {
		return
	}
	fn(n, depth)
	switch x := n.(type) {
	case *ast.AnchorNode:
		walkYAML(x.Value, depth+1, fn)
	case *ast.TagNode:
		walkYAML(x.Value, depth+1, fn)
	case *ast.MappingNode:
		for _, mv := range x.Values {
			walkYAML(mv, depth+1, fn)
		}
	case *ast.MappingValueNode:
		walkYAML(x.Key, depth+1, fn)
		walkYAML(x.Value, depth+1, fn)
	case *ast.MappingKeyNode:
		walkYAML(x.Value, depth+1, fn)
	case *ast.SequenceNode:
		for _, e := range x.Values {
			walkYAML(e, depth+1, fn)
		}
	}
}

// positionlessLine finds the line of a decoding error that go-yaml
// reports without a position: an alias of an anchor not defined before
// it, a tagged value the decoder failed on, or the deepest node past the
// decoder's nesting limit. It returns 0 for any other error.
func positionlessLine(data []byte, err error) int {
	file, perr := parser.ParseBytes(data, 0)
	if perr != nil || len(file.Docs) == 0 {
		return 0
	}
	line := 0
	switch {
	case strings.HasPrefix(err.Error(), "cannot find anchor by alias name "):
		// The first alias of that name: one before its anchor, or inside
		// it (the decoder knows an anchor once its value is decoded).
		alias := strings.TrimPrefix(err.Error(), "cannot find anchor by alias name ")
		walkYAML(file.Docs[0].Body, 0, func(n ast.Node, _ int) {
			if x, ok := n.(*ast.AliasNode); ok && x.Value != nil && x.Value.GetToken().Value == alias && line == 0 {
				line = tokenLine(x, 0)
			}
		})
	case errors.As(err, new(errDecodePanic)):
		// The first tagged value that is not a list.
		walkYAML(file.Docs[0].Body, 0, func(n ast.Node, _ int) {
			if x, ok := n.(*ast.TagNode); ok && line == 0 {
				if _, seq := x.Value.(*ast.SequenceNode); !seq {
					line = tokenLine(x, 0)
				}
			}
		})
	case errors.Is(err, yaml.ErrExceededMaxDepth):
		deepest := -1
		walkYAML(file.Docs[0].Body, 0, func(n ast.Node, depth int) {
			if _, ok := n.(*ast.AliasNode); ok {
				depth = 1 << 30 // an alias expands: the decoder goes deep there
			}
			if depth > deepest {
				deepest, line = depth, tokenLine(n, line)
			}
		})
	}
	return line
}

// tokenLine is the line of n's token, or def when it has none.
func tokenLine(n ast.Node, def int) int {
	if n == nil {
		return def
	}
	if t := n.GetToken(); t != nil && t.Position != nil && t.Position.Line > 0 {
		return t.Position.Line
	}
	return def
}
