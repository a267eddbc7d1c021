package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/expr-lang/expr/vm"
	"github.com/valyala/fasthttp"
	"golang.org/x/text/unicode/norm"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// decideState is the pooled scratch of one decision.
type decideState struct {
	keyword, buf, key, val, out []byte
	refArgs                     fasthttp.Args
	env                         ruleEnv
	vm                          vm.VM
	counters                    [2]index.Counter
	ckey                        [2][]byte
	h                           *xxhash.Digest
	rng                         *rand.Rand
	arms                        []model.ArmStats
	armIdx                      []int
	mac                         hash.Hash
	sum, msg                    []byte
	segs                        segSet
	segNames                    []string
	who                         []byte // whose segments the rules read; borrowed from the request
}

var decidePool = sync.Pool{New: func() any {
	return &decideState{h: xxhash.New(), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}}

// appendDecisionSig appends 16 hex digits of HMAC-SHA256 over the
// decision (experiment, variant, flag, visitor) under the server's signing
// key. A browser can then report a conversion with navigator.sendBeacon,
// which cannot send an API key: the signature proves the decision_id came
// from this server for this visitor.
func (s *Server) appendDecisionSig(dst []byte, ds *decideState, exp, variant string, flag byte, visitor []byte) []byte {
	if ds.mac == nil {
		ds.mac = hmac.New(sha256.New, s.signKey)
	}
	m := append(ds.msg[:0], exp...)
	m = append(append(m, 0), variant...)
	m = append(append(m, 0, flag, 0), visitor...)
	ds.msg = m
	ds.mac.Reset()
	_, _ = ds.mac.Write(m)
	ds.sum = ds.mac.Sum(ds.sum[:0])
	for _, c := range ds.sum[:8] {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// verifyDecision reports whether decisionID was signed by this server for
// visitor.
func (s *Server) verifyDecision(decisionID, visitor []byte) bool {
	exp, rest, ok := bytes.Cut(decisionID, []byte("."))
	if !ok {
		return false
	}
	variant, tail, ok := bytes.Cut(rest, []byte("."))
	if !ok || len(tail) != 17 {
		return false
	}
	ds := decidePool.Get().(*decideState)
	defer func() {
		ds.who = nil // request memory
		decidePool.Put(ds)
	}()
	ds.buf = s.appendDecisionSig(ds.buf[:0], ds, string(exp), string(variant), tail[0], visitor)
	return hmac.Equal(ds.buf, tail[1:])
}

// banditArms are an experiment's counts as the bandit sees them, refreshed
// from the state store's counters at most every banditRefresh.
type banditArms struct {
	mu   sync.Mutex
	at   time.Time
	arms []model.ArmStats
}

var banditRefresh = time.Second // tests shorten it

// banditPick chooses the variant of a new visitor by Thompson sampling
// over the variants with a positive weight.
func (s *Server) banditPick(ds *decideState, page *Page) int {
	v, _ := s.bandits.LoadOrStore(page.Experiment, &banditArms{})
	ba := v.(*banditArms)
	ds.arms, ds.armIdx = ds.arms[:0], ds.armIdx[:0]
	ba.mu.Lock()
	if time.Since(ba.at) > banditRefresh || len(ba.arms) != len(page.Variants) {
		ba.arms = s.readArms(page, ba.arms[:0])
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

// readArms reads every variant's exposures and conversions.
func (s *Server) readArms(page *Page, dst []model.ArmStats) []model.ArmStats {
	for _, v := range page.Variants {
		var a model.ArmStats
		if s.state != nil {
			a.Exposures, _ = s.state.Counter(expKey([]byte(page.Experiment), []byte(v.ID), "exposures"))
			a.Conversions, _ = s.state.Counter(expKey([]byte(page.Experiment), []byte(v.ID), "conversions"))
		}
		dst = append(dst, a)
	}
	return dst
}

// Decision reasons.
const (
	reasonRule      = "rule"
	reasonSticky    = "sticky"
	reasonSplit     = "split"
	reasonHoldout   = "holdout"
	reasonBot       = "bot"
	reasonNotInTest = "not_in_experiment"
)

const visitorCookie = "edgerec_vid"

// handleDecide answers /v1/decide: which variant of a landing page this
// visitor sees. Order: bots and the universal holdout get the control;
// then the page's rules, first match wins; then a visitor's earlier
// assignment (sticky across weight changes and ramps); then the split by
// the visitor's bucket. Split assignments are stored and counted as
// exposures; conversions come as events carrying the decision_id.
func (s *Server) handleDecide(ctx *fasthttp.RequestCtx) error {
	args := ctx.QueryArgs()
	cfg := s.cfg.Load()
	page, ok := cfg.Pages[string(args.Peek("page"))]
	if !ok {
		return badParam("page", "unknown page")
	}
	ds := decidePool.Get().(*decideState)
	defer decidePool.Put(ds)

	visitor := args.Peek("visitor")
	if len(visitor) == 0 {
		visitor = ctx.Request.Header.Cookie(visitorCookie)
	}
	if len(visitor) == 0 {
		// First visit without an id: make one and keep it in a cookie.
		ds.buf = s.appendRecID(ds.buf[:0])
		visitor = ds.buf
		var c fasthttp.Cookie
		c.SetKey(visitorCookie)
		c.SetValueBytes(visitor)
		c.SetMaxAge(365 * 24 * 3600)
		c.SetPath("/")
		c.SetSameSite(fasthttp.CookieSameSiteLaxMode)
		ctx.Response.Header.SetCookie(&c)
	}
	if err := s.checkID("visitor", visitor); err != nil {
		return err
	}
	// user= (a logged-in shopper) is whose segments the rules read; the
	// assignment stays the visitor's.
	ds.who = visitor
	if u := args.Peek("user"); len(u) > 0 {
		if err := s.checkID("user", u); err != nil {
			return err
		}
		ds.who = u
	}
	ua := ctx.Request.Header.UserAgent()
	variant, reason, holdout := page.control, reasonSplit, false
	switch {
	case isBot(ua):
		reason = reasonBot
	case cfg.Holdout > 0 && float64(model.Bucket("holdout", visitor)) < cfg.Holdout*model.Buckets:
		reason, holdout = reasonHoldout, true
	default:
		var err error
		if variant, reason, err = s.assign(ctx, ds, cfg, page, visitor, ua); err != nil {
			return err
		}
	}
	v := page.Variants[variant]
	out := ds.out[:0]
	out = append(out, `{"page":`...)
	out = appendJSONString(out, page.name)
	out = append(out, `,"experiment":`...)
	out = appendJSONString(out, page.Experiment)
	out = append(out, `,"variant":`...)
	out = appendJSONString(out, v.ID)
	out = append(out, `,"payload":`...)
	out = append(out, v.payload...)
	out = append(out, `,"decision_id":"`...)
	out = append(out, page.Experiment...)
	out = append(out, '.')
	out = append(out, v.ID...)
	out = append(out, '.')
	// 's': the decision came from the randomised split (split or sticky)
	// and its conversions count in the results; 'n': rule, holdout, bot or
	// out of the experiment's traffic.
	flag := byte('n')
	if reason == reasonSplit || reason == reasonSticky {
		flag = 's'
	}
	out = append(out, flag)
	out = s.appendDecisionSig(out, ds, page.Experiment, v.ID, flag, visitor)
	out = append(out, `","reason":"`...)
	out = append(out, reason...)
	out = append(out, `","holdout":`...)
	out = strconv.AppendBool(out, holdout)
	out = append(out, `,"visitor":`...)
	out = appendJSONString(out, visitor)
	out = append(out, "}\n"...)
	ds.out = out
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetBody(out)
	return nil
}

// assign runs rules, the stored assignment and the split.
func (s *Server) assign(ctx *fasthttp.RequestCtx, ds *decideState, cfg *Config, page *Page, visitor, ua []byte) (int, string, error) {
	// Stored assignment first: it also tells whether the visitor returns.
	ds.key = append(append(append(append(ds.key[:0], "as/"...), page.Experiment...), '/'), visitor...)
	var stored []byte
	found := false
	if s.state != nil {
		var err error
		if ds.val, found, err = s.state.AppendMeta(ds.val[:0], ds.key); err != nil {
			return 0, "", err
		}
		stored = ds.val
	}
	if len(page.Rules) > 0 {
		s.fillRuleEnv(ctx, ds, ua, found)
		ds.segs = segSet{}
		if page.segmented {
			var err error
			if ds.segs, err = s.segmentsOf(cfg, ds.who); err != nil {
				return 0, "", err
			}
			ds.segNames = ds.segNames[:0]
			for i, seg := range cfg.segments {
				if ds.segs.has(i) {
					ds.segNames = append(ds.segNames, seg.name)
				}
			}
			ds.env.Segments = ds.segNames
		}
		if i := s.matchRule(ds, cfg, page); i >= 0 {
			return page.Rules[i].variant, reasonRule, nil
		}
	}
	if found {
		for i, v := range page.Variants {
			if string(stored) == v.ID {
				return i, reasonSticky, nil
			}
		}
		// The stored variant was removed from the config: assign anew.
	}
	if page.traffic < 1 && float64(model.Bucket(page.Seed+"/traffic", visitor)) >= page.traffic*model.Buckets {
		return page.control, reasonNotInTest, nil
	}
	var i int
	if page.Mode == "bandit" {
		i = s.banditPick(ds, page)
	} else {
		i = model.PickWeighted(page.weights, model.Bucket(page.Seed, visitor))
	}
	if s.state != nil {
		ds.ckey[0] = append(append(append(append(ds.ckey[0][:0], "x/"...), page.Experiment...), '/'), page.Variants[i].ID...)
		ds.ckey[0] = append(ds.ckey[0], "/exposures"...)
		ds.counters[0] = index.Counter{Key: ds.ckey[0], Delta: 1}
		// And per hour, for the traffic share over time in the results.
		ds.ckey[1] = append(append(ds.ckey[1][:0], ds.ckey[0]...), '@')
		ds.ckey[1] = strconv.AppendInt(ds.ckey[1], s.o.Now().Unix()/3600*3600, 10)
		ds.counters[1] = index.Counter{Key: ds.ckey[1], Delta: 1}
		counters := ds.counters[:2]
		if page.Exposure == "event" {
			counters = nil // counted when the page reports the exposure
		}
		if err := s.state.SetMetaAndCount(ds.key, []byte(page.Variants[i].ID), counters); err != nil {
			return 0, "", err
		}
	}
	return i, reasonSplit, nil
}

// matchRule returns the index of the first rule of page that holds for
// ds.env, or -1. Outcomes are cached by a hash of the environment: most
// visitors share a few input tuples (no keyword, the same campaigns), and
// expr boxes every field it reads, which allocates.
func (s *Server) matchRule(ds *decideState, cfg *Config, page *Page) int {
	e := &ds.env
	ds.h.Reset()
	for _, f := range [...]string{page.Experiment, e.Keyword, e.Ref, e.SearchEngine, e.UTMSource, e.UTMMedium, e.UTMCampaign, e.UTMTerm, e.UTMContent, e.Device} {
		_, _ = ds.h.WriteString(f)
		_, _ = ds.h.Write([]byte{0})
	}
	if e.Returning {
		_, _ = ds.h.Write([]byte{1})
	}
	for _, w := range ds.segs {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], w)
		_, _ = ds.h.Write(b[:])
	}
	var gen [8]byte
	binary.LittleEndian.PutUint64(gen[:], cfg.gen)
	_, _ = ds.h.Write(gen[:])
	key := ds.h.Sum64()
	if v, ok := s.cache.Get(key); ok && len(v) == 1 && int(v[0])-1 < len(page.Rules) {
		return int(v[0]) - 1
	}
	match := -1
	for i, r := range page.Rules {
		out, err := ds.vm.Run(r.program, e)
		if err != nil {
			// A rule that fails at run time does not match.
			s.logThrottled("page %q: rule %d: %v", page.name, i+1, err)
			continue
		}
		if m, _ := out.(bool); m {
			match = i
			break
		}
	}
	if match < 255 {
		s.cache.Set(key, []byte{byte(match + 1)}, 1)
	}
	return match
}

// fillRuleEnv fills the rule environment from the request. Its strings
// alias request memory through b2s and die with the request.
func (s *Server) fillRuleEnv(ctx *fasthttp.RequestCtx, ds *decideState, ua []byte, returning bool) {
	args := ctx.QueryArgs()
	e := &ds.env
	*e = ruleEnv{Returning: returning}
	e.UTMSource = b2s(args.Peek("utm_source"))
	e.UTMMedium = b2s(args.Peek("utm_medium"))
	e.UTMCampaign = b2s(args.Peek("utm_campaign"))
	e.UTMTerm = b2s(args.Peek("utm_term"))
	e.UTMContent = b2s(args.Peek("utm_content"))
	e.Device = device(ua)
	ref := args.Peek("ref")
	host, query := splitURL(ref)
	e.Ref = b2s(host)
	e.SearchEngine = searchEngine(host)
	term := args.Peek("q")
	if len(term) == 0 {
		term = args.Peek("utm_term")
	}
	if len(term) == 0 && len(query) > 0 {
		ds.refArgs.ParseBytes(query)
		for _, k := range [...]string{"q", "p", "wd", "text", "query"} {
			if v := ds.refArgs.Peek(k); len(v) > 0 {
				term = v
				break
			}
		}
	}
	ds.keyword = normalizeKeyword(ds.keyword[:0], term)
	e.Keyword = b2s(ds.keyword)
}

// b2s views b as a string without copying. The only use: the rule
// environment, read by expr while the request lives and never kept.
// TestDecideAllocs shows what a copy would cost.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// normalizeKeyword appends the search term folded for matching: Unicode
// NFKC (full-width letters and digits to half-width, half-width katakana
// to full-width, ideographic space to space), lower case, runs of spaces
// to one, trimmed.
func normalizeKeyword(dst, src []byte) []byte {
	start := len(dst)
	dst = norm.NFKC.Append(dst, src...)
	out := dst[:start]
	space := true
	tail := dst[start:]
	for len(tail) > 0 {
		r, n := utf8.DecodeRune(tail)
		tail = tail[n:]
		if unicode.IsSpace(r) {
			if !space {
				out = append(out, ' ')
				space = true
			}
			continue
		}
		space = false
		out = utf8.AppendRune(out, unicode.ToLower(r))
	}
	return bytes.TrimRight(out, " ")
}

// splitURL returns the host and the query of a URL without parsing it
// fully.
func splitURL(u []byte) (host, query []byte) {
	if i := bytes.Index(u, []byte("://")); i >= 0 && bytes.IndexAny(u[:i], "/?#") < 0 {
		u = u[i+3:]
	}
	rest := u
	if i := bytes.IndexAny(u, "/?#"); i >= 0 {
		host, rest = u[:i], u[i:]
	} else {
		host, rest = u, nil
	}
	if i := bytes.IndexByte(rest, '?'); i >= 0 {
		query = rest[i+1:]
		if j := bytes.IndexByte(query, '#'); j >= 0 {
			query = query[:j]
		}
	}
	return host, query
}

func searchEngine(host []byte) string {
	for _, e := range [...]string{"google", "bing", "yahoo", "duckduckgo", "baidu", "yandex", "naver", "ecosia"} {
		if bytes.Contains(host, []byte(e)) {
			return e
		}
	}
	return ""
}

func device(ua []byte) string {
	switch {
	case bytes.Contains(ua, []byte("iPad")) || bytes.Contains(ua, []byte("Tablet")):
		return "tablet"
	case bytes.Contains(ua, []byte("Mobi")):
		return "mobile"
	}
	return "desktop"
}

var botMarkers = [...][]byte{[]byte("bot"), []byte("crawl"), []byte("spider"), []byte("slurp"), []byte("facebookexternalhit"),
	[]byte("headlesschrome"), []byte("lighthouse"), []byte("preview")}

// isBot reports whether the User-Agent is a known crawler or preview
// fetcher: those always get the control and stay out of the statistics.
func isBot(ua []byte) bool {
	for _, m := range botMarkers {
		if containsFold(ua, m) {
			return true
		}
	}
	return false
}

// containsFold is an ASCII case-insensitive bytes.Contains (marker is lower case).
func containsFold(s, marker []byte) bool {
	for i := 0; i+len(marker) <= len(s); i++ {
		j := 0
		for ; j < len(marker); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != marker[j] {
				break
			}
		}
		if j == len(marker) {
			return true
		}
	}
	return false
}
