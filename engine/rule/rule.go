// Package rule compiles segment rules: expr-lang expressions over a
// visitor's profile ("visited pricing twice in 30 days, never the contact
// page": views("/pricing", "30d") >= 2 && views("/contact", "30d") == 0).
//
// expr-lang parses and type-checks an expression; the checked tree is
// then lowered to Go closures, so evaluating a rule neither boxes values
// through expr's VM nor allocates: tens of nanoseconds a rule. The language
// is expr's, restricted to what a profile needs: literals, purchases,
// purchase_value, the functions below, ! && || and or not, comparisons,
// + - * /, `in [...]`, contains, startsWith, endsWith. Function arguments
// are constants, checked at compile time.
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
// (attr of a number, num of a string) makes the rule not match and is
// reported in Ctx.Err.
package rule

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"

	"github.com/edgerec/edgerec/internal/bytesconv"
	"github.com/edgerec/edgerec/model"
)

// Ctx is what a rule sees: one decoded profile at one time. Reuse one
// per goroutine; it is not safe for concurrent use.
type Ctx struct {
	P model.Profile
	// Raw is the encoded profile P was decoded from; callers keep it here
	// to reuse its memory.
	Raw []byte
	// Now is the evaluation time, Unix seconds.
	Now int64
	// Err is the first run-time error of the rule being evaluated; callers
	// clear it before each rule.
	Err error
}

// Func is a compiled rule: whether it holds for the profile in c.
type Func func(c *Ctx) bool

type (
	numFunc func(*Ctx) float64
	strFunc func(*Ctx) string
)

// lowered is a checked expression node as a closure of its type.
type lowered struct {
	b Func
	n numFunc
	s strFunc
}

// segFuncs declare the profile functions to expr's checker; lower
// implements them (expr's own program is never run).
var segFuncs = []expr.Option{
	expr.Function("views", unused, new(func(string, string) int)),
	expr.Function("events", unused, new(func(string, string) int)),
	expr.Function("category", unused, new(func(string, string) int)),
	expr.Function("hours_since", unused, new(func(string) float64)),
	expr.Function("days_since", unused, new(func(string) float64)),
	expr.Function("attr", unused, new(func(string) string)),
	expr.Function("num", unused, new(func(string) float64)),
	expr.Function("has", unused, new(func(string) bool)),
	expr.Function("consent", unused, new(func(string) bool)),
}

func unused(...any) (any, error) { return nil, fmt.Errorf("segments run lowered, not on the VM") }

var segEnv = map[string]any{"purchases": 0, "purchase_value": 0.0}

// Compile checks src with expr and lowers it to a Func; the error names
// the column of what is wrong.
func Compile(src string) (Func, error) {
	opts := append([]expr.Option{expr.Env(segEnv), expr.AsBool(), expr.Optimize(false)}, segFuncs...)
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, err
	}
	l, err := lower(prog.Node())
	if err != nil {
		return nil, err
	}
	if l.b == nil {
		return nil, fmt.Errorf("want a true/false expression")
	}
	return l.b, nil
}

var windowPattern = regexp.MustCompile(`^([1-9][0-9]{0,4})(h|d|w)$`)

// ParseWindow reads a window ("24h", "30d", "2w") as seconds.
func ParseWindow(w string) (int64, error) {
	m := windowPattern.FindStringSubmatch(w)
	if m == nil {
		return 0, fmt.Errorf("window %q: want a number and h, d or w (24h, 30d, 2w)", w)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	unit := map[string]int64{"h": 3600, "d": 86400, "w": 7 * 86400}[m[2]]
	if n*unit > 3660*86400 {
		return 0, fmt.Errorf("window %q: at most ten years", w)
	}
	return n * unit, nil
}

func constString(n ast.Node) (string, error) {
	s, ok := n.(*ast.StringNode)
	if !ok {
		return "", fmt.Errorf("column %d: want a constant string argument", n.Location().From)
	}
	return s.Value, nil
}

// lower turns a checked node into a closure.
func lower(node ast.Node) (lowered, error) {
	switch n := node.(type) {
	case *ast.BoolNode:
		v := n.Value
		return lowered{b: func(*Ctx) bool { return v }}, nil
	case *ast.IntegerNode:
		v := float64(n.Value)
		return lowered{n: func(*Ctx) float64 { return v }}, nil
	case *ast.FloatNode:
		v := n.Value
		return lowered{n: func(*Ctx) float64 { return v }}, nil
	case *ast.StringNode:
		v := n.Value
		return lowered{s: func(*Ctx) string { return v }}, nil
	case *ast.IdentifierNode:
		switch n.Value {
		case "purchases":
			return lowered{n: func(c *Ctx) float64 { return float64(c.P.Purchases) }}, nil
		case "purchase_value":
			return lowered{n: func(c *Ctx) float64 { return c.P.PurchaseValue }}, nil
		}
	case *ast.UnaryNode:
		x, err := lower(n.Node)
		if err != nil {
			return x, err
		}
		switch {
		case (n.Operator == "!" || n.Operator == "not") && x.b != nil:
			return lowered{b: func(c *Ctx) bool { return !x.b(c) }}, nil
		case n.Operator == "-" && x.n != nil:
			return lowered{n: func(c *Ctx) float64 { return -x.n(c) }}, nil
		case n.Operator == "+" && x.n != nil:
			return x, nil
		}
	case *ast.BinaryNode:
		return lowerBinary(n)
	case *ast.CallNode:
		return lowerCall(n)
	}
	return lowered{}, fmt.Errorf("column %d: %s is not supported in segments", node.Location().From, describe(node))
}

func describe(n ast.Node) string {
	switch n := n.(type) {
	case *ast.BinaryNode:
		return "operator " + strconv.Quote(n.Operator)
	case *ast.UnaryNode:
		return "operator " + strconv.Quote(n.Operator)
	case *ast.IdentifierNode:
		return "name " + strconv.Quote(n.Value)
	}
	return strings.TrimPrefix(reflect.TypeOf(n).String(), "*ast.")
}

func lowerBinary(n *ast.BinaryNode) (lowered, error) {
	if n.Operator == "in" { // expr parses `a not in b` as not (a in b)
		return lowerIn(n)
	}
	l, err := lower(n.Left)
	if err != nil {
		return l, err
	}
	r, err := lower(n.Right)
	if err != nil {
		return r, err
	}
	ln, rn, lb, rb, ls, rs := l.n, r.n, l.b, r.b, l.s, r.s
	switch op := n.Operator; {
	case (op == "&&" || op == "and") && lb != nil && rb != nil:
		return lowered{b: func(c *Ctx) bool { return lb(c) && rb(c) }}, nil
	case (op == "||" || op == "or") && lb != nil && rb != nil:
		return lowered{b: func(c *Ctx) bool { return lb(c) || rb(c) }}, nil
	case ln != nil && rn != nil:
		switch op {
		case "==":
			return lowered{b: func(c *Ctx) bool { return ln(c) == rn(c) }}, nil
		case "!=":
			return lowered{b: func(c *Ctx) bool { return ln(c) != rn(c) }}, nil
		case "<":
			return lowered{b: func(c *Ctx) bool { return ln(c) < rn(c) }}, nil
		case "<=":
			return lowered{b: func(c *Ctx) bool { return ln(c) <= rn(c) }}, nil
		case ">":
			return lowered{b: func(c *Ctx) bool { return ln(c) > rn(c) }}, nil
		case ">=":
			return lowered{b: func(c *Ctx) bool { return ln(c) >= rn(c) }}, nil
		case "+":
			return lowered{n: func(c *Ctx) float64 { return ln(c) + rn(c) }}, nil
		case "-":
			return lowered{n: func(c *Ctx) float64 { return ln(c) - rn(c) }}, nil
		case "*":
			return lowered{n: func(c *Ctx) float64 { return ln(c) * rn(c) }}, nil
		case "/":
			return lowered{n: func(c *Ctx) float64 { return ln(c) / rn(c) }}, nil
		}
	case ls != nil && rs != nil:
		switch op {
		case "==":
			return lowered{b: func(c *Ctx) bool { return ls(c) == rs(c) }}, nil
		case "!=":
			return lowered{b: func(c *Ctx) bool { return ls(c) != rs(c) }}, nil
		case "contains":
			return lowered{b: func(c *Ctx) bool { return strings.Contains(ls(c), rs(c)) }}, nil
		case "startsWith":
			return lowered{b: func(c *Ctx) bool { return strings.HasPrefix(ls(c), rs(c)) }}, nil
		case "endsWith":
			return lowered{b: func(c *Ctx) bool { return strings.HasSuffix(ls(c), rs(c)) }}, nil
		}
	case lb != nil && rb != nil:
		switch op {
		case "==":
			return lowered{b: func(c *Ctx) bool { return lb(c) == rb(c) }}, nil
		case "!=":
			return lowered{b: func(c *Ctx) bool { return lb(c) != rb(c) }}, nil
		}
	}
	return lowered{}, fmt.Errorf("column %d: operator %q is not supported on these operands in segments", n.Location().From, n.Operator)
}

// lowerIn handles `x in ["a", "b"]` over constant strings or numbers.
func lowerIn(n *ast.BinaryNode) (lowered, error) {
	l, err := lower(n.Left)
	if err != nil {
		return l, err
	}
	arr, ok := n.Right.(*ast.ArrayNode)
	if !ok {
		return lowered{}, fmt.Errorf("column %d: `in` needs a constant list in segments", n.Location().From)
	}
	var strs []string
	var nums []float64
	for _, e := range arr.Nodes {
		switch v := e.(type) {
		case *ast.StringNode:
			strs = append(strs, v.Value)
		case *ast.IntegerNode:
			nums = append(nums, float64(v.Value))
		case *ast.FloatNode:
			nums = append(nums, v.Value)
		default:
			return lowered{}, fmt.Errorf("column %d: `in` needs a list of constants in segments", e.Location().From)
		}
	}
	switch {
	case l.s != nil && nums == nil:
		ls := l.s
		return lowered{b: func(c *Ctx) bool {
			v := ls(c)
			for _, s := range strs {
				if s == v {
					return true
				}
			}
			return false
		}}, nil
	case l.n != nil && strs == nil:
		ln := l.n
		return lowered{b: func(c *Ctx) bool {
			v := ln(c)
			for _, x := range nums {
				if x == v {
					return true
				}
			}
			return false
		}}, nil
	}
	return lowered{}, fmt.Errorf("column %d: `in` mixes types", n.Location().From)
}

func lowerCall(n *ast.CallNode) (lowered, error) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return lowered{}, fmt.Errorf("column %d: only the profile functions can be called in segments", n.Location().From)
	}
	args := make([]string, len(n.Arguments))
	for i, a := range n.Arguments {
		var err error
		if args[i], err = constString(a); err != nil {
			return lowered{}, fmt.Errorf("%s: %w", id.Value, err)
		}
	}
	switch id.Value {
	case "views", "events", "category":
		w, err := ParseWindow(args[1])
		if err != nil {
			return lowered{}, fmt.Errorf("%s: %w", id.Value, err)
		}
		kind, name := byte(model.DimPage), args[0]
		switch id.Value {
		case "events":
			t, ok := model.ParseEventType([]byte(name))
			if !ok {
				return lowered{}, fmt.Errorf("events: unknown event type %q", name)
			}
			kind, name = model.DimType, t.String()
		case "category":
			kind = model.DimCategory
		default:
			name = Path(name)
		}
		return lowered{n: func(c *Ctx) float64 { return float64(c.P.Count(kind, name, w, c.Now)) }}, nil
	case "hours_since", "days_since":
		unit := 3600.0
		if id.Value == "days_since" {
			unit = 86400
		}
		var at func(*model.Profile) int64
		switch args[0] {
		case "seen", "last_seen":
			at = func(p *model.Profile) int64 { return p.LastSeen }
		case "first_seen":
			at = func(p *model.Profile) int64 { return p.FirstSeen }
		default:
			t, ok := model.ParseEventType([]byte(args[0]))
			if !ok {
				return lowered{}, fmt.Errorf("%s: %q: want an event type, seen or first_seen", id.Value, args[0])
			}
			at = func(p *model.Profile) int64 { return p.Last[t] }
		}
		return lowered{n: func(c *Ctx) float64 {
			t := at(&c.P)
			if t == 0 {
				return math.Inf(1)
			}
			return float64(c.Now-t) / unit
		}}, nil
	case "attr":
		key := args[0]
		return lowered{s: func(c *Ctx) string {
			a := c.P.Attr(key)
			if a == nil {
				return ""
			}
			if a.Type != model.AttrString {
				c.fail("attr(%q): the attribute is not a string", key)
				return ""
			}
			return bytesconv.B2S(a.Str)
		}}, nil
	case "num":
		key := args[0]
		return lowered{n: func(c *Ctx) float64 {
			a := c.P.Attr(key)
			if a == nil {
				return math.NaN()
			}
			if a.Type != model.AttrNumber {
				c.fail("num(%q): the attribute is not a number", key)
				return math.NaN()
			}
			return a.Num
		}}, nil
	case "has":
		key := args[0]
		return lowered{b: func(c *Ctx) bool { return c.P.Attr(key) != nil }}, nil
	case "consent":
		key := "consent_" + args[0]
		return lowered{b: func(c *Ctx) bool { return HasConsent(&c.P, key) }}, nil
	}
	return lowered{}, fmt.Errorf("column %d: unknown function %q", n.Location().From, id.Value)
}

// HasConsent reports whether the attribute key (consent_<channel>) is
// true: a bool true, or the string "true" or "yes", or a number 1.
func HasConsent(p *model.Profile, key string) bool {
	a := p.Attr(key)
	if a == nil {
		return false
	}
	switch a.Type {
	case model.AttrBool, model.AttrNumber:
		return a.Num == 1
	}
	return string(a.Str) == "true" || string(a.Str) == "yes"
}

// fail records the first run-time error of the segment being evaluated.
// The message is built only then: the common path stays allocation-free.
func (c *Ctx) fail(format string, args ...any) {
	if c.Err == nil {
		c.Err = fmt.Errorf(format, args...)
	}
}

// Path writes a views() path the way profiles store page paths: as
// pagePath cuts them from the URLs browsers send, percent-encoded. So
// "/pricing/" counts the views of /pricing, and "/料金" those of
// /%E6%96%99%E9%87%91. A path ending in * is a prefix and keeps its
// trailing slash; a path that holds a % is taken as already encoded.
func Path(p string) string {
	prefix, star := strings.CutSuffix(p, "*")
	if !star {
		prefix = string(model.PagePath([]byte(prefix)))
	}
	if !strings.Contains(prefix, "%") {
		prefix = escapePath(prefix)
	}
	if star {
		return prefix + "*"
	}
	return prefix
}

// escapePath percent-encodes p as browsers encode a URL's path (the WHATWG
// path percent-encode set: controls, space, " # < > ? ` { } and every
// byte past ASCII), and nothing else: "/sale(2024)" and "/men's" stay as
// they are sent, where url.URL's EscapedPath would encode ( ) and '.
func escapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"#<>?`{}", c) >= 0 {
			b.WriteByte('%')
			b.WriteByte("0123456789ABCDEF"[c>>4])
			b.WriteByte("0123456789ABCDEF"[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
