package engine

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
)

// Page is a landing page with one experiment on it: its variants, the
// rules that target a variant, and how the rest are split.
type Page struct {
	Experiment string      `yaml:"experiment"`
	Seed       string      `yaml:"seed"`
	Mode       string      `yaml:"mode"`
	Traffic    *float64    `yaml:"traffic"`
	Control    string      `yaml:"control"`
	Variants   []*Variant  `yaml:"variants"`
	Rules      []*PageRule `yaml:"rules"`
	// BurnIn and MinShare tune mode: bandit (see model.Bandit).
	// Exposure: "decision" (default) counts a visitor as exposed at their
	// first randomised decision; "event" waits for an exposure event with
	// the decision_id, for pages that decide before the variant shows.
	Exposure string  `yaml:"exposure"`
	BurnIn   float64 `yaml:"burn_in"`
	MinShare float64 `yaml:"min_share"`
	// Goals are what a conversion counts for; the primary one is what
	// results show first and what a bandit optimises. None configured:
	// one goal, "conversion".
	Goals []*Goal `yaml:"goals"`

	name      string
	placement bool    // the experiment of a placement's variants
	primary   int     // index of the primary goal
	holdbacks []int   // indexes of the rules with a holdback
	fp        uint64  // fingerprint of what starts a new phase
	phase     uint64  // the current phase, from 1 (SetConfig)
	phases    []Phase // every phase, oldest first (SetConfig)
	segmented bool    // a rule reads the visitor's segments
	traffic   float64
	control   int
	weights   []float64
}

// Variant is one version of a page; Payload is returned as JSON.
type Variant struct {
	ID      string         `yaml:"id"`
	Weight  float64        `yaml:"weight"`
	Payload map[string]any `yaml:"payload"`

	payload []byte
}

// PageRule targets a variant when its condition holds. Conditions are
// expr-lang expressions over the request: keyword (the normalised search
// term), ref (referrer host), search_engine, utm_source, utm_medium,
// utm_campaign, utm_term, utm_content, device (mobile, tablet, desktop),
// returning (bool), segments (the visitor's segments: "name" in segments).
//
// Holdback keeps that share of the rule's visitors on the control,
// sticky by visitor, so the rule's own effect is measured: its exposures
// and conversions against its holdback's. ID names the rule in results
// (default rule1, rule2 … by position).
type PageRule struct {
	ID       string  `yaml:"id"`
	If       string  `yaml:"if"`
	Variant  string  `yaml:"variant"`
	Holdback float64 `yaml:"holdback"`

	program *vm.Program
	variant int
}

// ruleEnv is what a rule condition sees. Its strings alias the request:
// valid only while the rule runs.
type ruleEnv struct {
	Keyword      string   `expr:"keyword"`
	Ref          string   `expr:"ref"`
	SearchEngine string   `expr:"search_engine"`
	UTMSource    string   `expr:"utm_source"`
	UTMMedium    string   `expr:"utm_medium"`
	UTMCampaign  string   `expr:"utm_campaign"`
	UTMTerm      string   `expr:"utm_term"`
	UTMContent   string   `expr:"utm_content"`
	Device       string   `expr:"device"`
	Returning    bool     `expr:"returning"`
	Segments     []string `expr:"segments"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validatePages checks pages and compiles their rules; at reports an error
// at a YAML path.
func (c *Config) validatePages(at func(path, msg string) error) error {
	if c.Holdout < 0 || c.Holdout > 0.5 {
		return at("$.holdout", fmt.Sprintf("holdout %v: want a share from 0 to 0.5", c.Holdout))
	}
	experiments := map[string]string{}
	for _, name := range sortedKeys(c.Pages) {
		p := c.Pages[name]
		base := "$.pages." + pathKey(name)
		if p == nil {
			return at(base, fmt.Sprintf("page %q is empty", name))
		}
		p.name = name
		if !idPattern.MatchString(p.Experiment) {
			return at(base+".experiment", fmt.Sprintf("page %q: experiment id %q: want 1-64 of A-Z a-z 0-9 _ -", name, p.Experiment))
		}
		if other, dup := experiments[p.Experiment]; dup {
			return at(base+".experiment", fmt.Sprintf("page %q: experiment %q is already on page %q", name, p.Experiment, other))
		}
		if pl, dup := c.placementExps[p.Experiment]; dup {
			return at(base+".experiment", fmt.Sprintf("page %q: experiment %q is already on placement %q", name, p.Experiment, pl.name))
		}
		experiments[p.Experiment] = name
		// Empty rules first: validateSplit fingerprints the rules
		// (a "- " entry of rules: is nil; FuzzParseConfig found it).
		for i, r := range p.Rules {
			if r == nil {
				return at(fmt.Sprintf("%s.rules[%d]", base, i), fmt.Sprintf("page %q: empty rule", name))
			}
		}
		if err := p.validateSplit(base, at); err != nil {
			return err
		}
		p.holdbacks = p.holdbacks[:0]
		ruleIDs := map[string]bool{}
		for i, r := range p.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", base, i)
			if r.ID == "" {
				r.ID = fmt.Sprintf("rule%d", i+1)
			}
			if !idPattern.MatchString(r.ID) || ruleIDs[r.ID] {
				return at(rp+".id", fmt.Sprintf("page %q: rule %d: id %q: want a unique id of 1-64 of A-Z a-z 0-9 _ -", name, i+1, r.ID))
			}
			ruleIDs[r.ID] = true
			if r.Holdback < 0 || r.Holdback > 0.5 || r.Holdback != r.Holdback {
				return at(rp+".holdback", fmt.Sprintf("page %q: rule %d: holdback %v: want a share from 0 to 0.5", name, i+1, r.Holdback))
			}
			if r.Holdback > 0 {
				p.holdbacks = append(p.holdbacks, i)
			}
			vi := p.variant([]byte(r.Variant))
			if vi < 0 {
				return at(rp+".variant", fmt.Sprintf("page %q: rule %d names variant %q, which is not on the page", name, i+1, r.Variant))
			}
			r.variant = vi
			prog, err := expr.Compile(r.If, expr.Env(ruleEnv{}), expr.AsBool())
			if err != nil {
				return at(rp+".if", fmt.Sprintf("page %q: rule %d: %v", name, i+1, err))
			}
			r.program = prog
			uses, err := segmentUses(prog, c.segmentIndex)
			if err != nil {
				return at(rp+".if", fmt.Sprintf("page %q: rule %d: %v", name, i+1, err))
			}
			p.segmented = p.segmented || uses
		}
		p.fp = p.fingerprint()
	}
	return nil
}

// validateSplit checks what an experiment needs whether on a page or a
// placement: id, mode, exposure, traffic, variants and their weights,
// control and goals; it fills their derived fields.
func (p *Page) validateSplit(base string, at func(path, msg string) error) error {
	name := p.name
	if !idPattern.MatchString(p.Experiment) {
		return at(base+".experiment", fmt.Sprintf("%q: experiment id %q: want 1-64 of A-Z a-z 0-9 _ -", name, p.Experiment))
	}
	if p.Seed == "" {
		p.Seed = p.Experiment
	}
	switch p.Mode {
	case "", "split":
		p.Mode = "split"
	case "bandit":
		if p.MinShare < 0 || p.MinShare > 0.5 || p.BurnIn < 0 {
			return at(base+".min_share", fmt.Sprintf("page %q: min_share must be 0 to 0.5 and burn_in >= 0", name))
		}
	default:
		return at(base+".mode", fmt.Sprintf("page %q: mode %q: want split or bandit", name, p.Mode))
	}
	switch p.Exposure {
	case "", "decision":
		p.Exposure = "decision"
	case "event":
	default:
		return at(base+".exposure", fmt.Sprintf("page %q: exposure %q: want decision or event", name, p.Exposure))
	}
	p.traffic = 1
	if p.Traffic != nil {
		if *p.Traffic < 0 || *p.Traffic > 1 {
			return at(base+".traffic", fmt.Sprintf("page %q: traffic %v: want a share from 0 to 1", name, *p.Traffic))
		}
		p.traffic = *p.Traffic
	}
	if len(p.Variants) < 1 {
		return at(base+".variants", fmt.Sprintf("page %q: no variants", name))
	}
	index := map[string]int{}
	p.weights = p.weights[:0]
	total := 0.0
	for i, v := range p.Variants {
		vp := fmt.Sprintf("%s.variants[%d]", base, i)
		if v == nil || !idPattern.MatchString(v.ID) {
			return at(vp, fmt.Sprintf("page %q: variant %d needs an id of A-Z a-z 0-9 _ -", name, i))
		}
		if _, dup := index[v.ID]; dup {
			return at(vp, fmt.Sprintf("page %q: variant %q twice", name, v.ID))
		}
		if v.Weight < 0 {
			return at(vp+".weight", fmt.Sprintf("page %q: variant %q: weight must be >= 0", name, v.ID))
		}
		index[v.ID] = i
		total += v.Weight
		p.weights = append(p.weights, v.Weight)
		b, err := json.Marshal(jsonable(v.Payload))
		if err != nil {
			return at(vp+".payload", fmt.Sprintf("page %q: variant %q: payload: %v", name, v.ID, err))
		}
		if v.Payload == nil {
			b = []byte("{}")
		}
		v.payload = b
	}
	if total <= 0 {
		return at(base+".variants", fmt.Sprintf("page %q: variant weights sum to 0", name))
	}
	if p.Control == "" {
		p.Control = p.Variants[0].ID
	}
	ci, ok := index[p.Control]
	if !ok {
		return at(base+".control", fmt.Sprintf("page %q: control %q is not a variant", name, p.Control))
	}
	p.control = ci
	if err := p.validateGoals(base, at); err != nil {
		return err
	}
	p.fp = p.fingerprint()
	return nil
}

// segmentUses reports whether a rule reads the visitor's segments, and
// checks that it does so only as "name" in segments (or not ...), with a
// configured name: a typo would otherwise make `not in` always true.
func segmentUses(prog *vm.Program, known map[string]int) (bool, error) {
	v := &segmentVisitor{known: known, ok: map[ast.Node]bool{}}
	root := prog.Node()
	ast.Walk(&root, v)
	if v.err == nil && v.refs != len(v.ok) {
		v.err = fmt.Errorf(`use segments only as "name" in segments`)
	}
	return v.refs > 0, v.err
}

type segmentVisitor struct {
	known map[string]int
	ok    map[ast.Node]bool // segments identifiers in a well-formed test
	refs  int
	err   error
}

func (v *segmentVisitor) Visit(n *ast.Node) {
	switch x := (*n).(type) {
	case *ast.IdentifierNode:
		if x.Value == "segments" {
			v.refs++
		}
	case *ast.BinaryNode:
		id, ok := x.Right.(*ast.IdentifierNode)
		if x.Operator != "in" || !ok || id.Value != "segments" {
			return
		}
		str, ok := x.Left.(*ast.StringNode)
		if !ok {
			return
		}
		if _, known := v.known[str.Value]; !known && v.err == nil {
			v.err = fmt.Errorf("unknown segment %q", str.Value)
		}
		v.ok[id] = true
	}
}

// jsonable turns YAML's map[string]any trees (which may hold
// map[any]any) into what encoding/json accepts.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	}
	return v
}

// pageOf returns the page or placement experiment exp, or nil.
func (c *Config) pageOf(exp []byte) *Page {
	for _, p := range c.Pages {
		if p.Experiment == string(exp) {
			return p
		}
	}
	return c.placementExps[string(exp)]
}

// experiments calls fn for every experiment, of pages and of placements.
func (c *Config) experiments(fn func(p *Page)) {
	for _, p := range c.Pages {
		fn(p)
	}
	for _, p := range c.placementExps {
		fn(p)
	}
}

// variant returns the index of the variant with id, or -1.
func (p *Page) variant(id []byte) int {
	for i, v := range p.Variants {
		if v.ID == string(id) {
			return i
		}
	}
	return -1
}
