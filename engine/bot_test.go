package engine

import (
	"bufio"
	"hash/maphash"
	"os"
	"strings"
	"testing"
)

type labelledUA struct {
	label string // bot, or a browser's device: mobile, tablet, desktop
	ua    string
}

// loadUserAgents reads testdata/user-agents.tsv: "bot" or a browser's
// device, a tab, a real User-Agent string.
func loadUserAgents(tb testing.TB) []labelledUA {
	tb.Helper()
	f, err := os.Open("testdata/user-agents.tsv")
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []labelledUA
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		label, ua, ok := strings.Cut(line, "\t")
		switch label {
		case "bot", "mobile", "tablet", "desktop":
		default:
			ok = false
		}
		if !ok {
			tb.Fatalf("testdata/user-agents.tsv:%d: want bot, mobile, tablet or desktop, a tab, a User-Agent", n)
		}
		out = append(out, labelledUA{label, ua})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestIsBotRealUserAgents: every bot of the set is detected, no browser
// is taken for one, and each browser's device is told right.
func TestIsBotRealUserAgents(t *testing.T) {
	set := loadUserAgents(t)
	var bots, humans, missed, flagged int
	for _, c := range set {
		got := isBot([]byte(c.ua))
		isBot := c.label == "bot"
		if !isBot {
			if d := device([]byte(c.ua)); d != c.label {
				t.Errorf("device %s, want %s: %s", d, c.label, c.ua)
			}
		}
		if isBot {
			bots++
		} else {
			humans++
		}
		switch {
		case isBot && !got:
			missed++
			t.Errorf("bot not detected: %s", c.ua)
		case !isBot && got:
			flagged++
			t.Errorf("browser taken for a bot: %s", c.ua)
		}
	}
	if bots < 150 || humans < 150 {
		t.Fatalf("the set has %d bots and %d browsers; want at least 150 of each", bots, humans)
	}
	t.Logf("%d bots: %d detected; %d browsers: %d taken for bots", bots, bots-missed, humans, flagged)
	// Every verdict is remembered: no two of the set take turns in a slot.
	for _, c := range set {
		if _, ok := botVerdicts.get(maphash.Bytes(botSeed, []byte(c.ua))); !ok {
			t.Errorf("verdict not remembered: %s", c.ua)
		}
	}
}

// TestBotSources: each source catches bots the other does not, so both
// are needed: our markers the HTTP clients and monitors the crawler list
// lacks, the list the named services our markers lack.
func TestBotSources(t *testing.T) {
	var onlyMarked, onlyListed int
	for _, c := range loadUserAgents(t) {
		if c.label != "bot" {
			continue
		}
		m, l := markedBot([]byte(c.ua)), listedCrawler([]byte(c.ua))
		switch {
		case m && !l:
			onlyMarked++
		case l && !m:
			onlyListed++
		}
	}
	if onlyMarked == 0 || onlyListed < 12 {
		t.Fatalf("bots only our markers catch: %d, only the list: %d; want some, and 12 or more", onlyMarked, onlyListed)
	}
	t.Logf("bots only our markers catch: %d; only the crawler list: %d", onlyMarked, onlyListed)
}

// TestVerdictCache: a verdict is found under its hash only; four hashes
// of one set stay together, a fifth takes one of their slots; a hash of
// 0 is stored like any other.
func TestVerdictCache(t *testing.T) {
	c := new(verdictCache)
	if _, ok := c.get(0); ok {
		t.Fatal("an empty cache found hash 0")
	}
	c.put(0, true)
	if bot, ok := c.get(0); !ok || !bot {
		t.Fatalf("hash 0: %v %v, want true true", bot, ok)
	}
	var hs [5]uint64
	for i := range hs {
		hs[i] = uint64(i+1)<<40 | 0x1234 // one set
	}
	for i, h := range hs[:4] {
		c.put(h, i%2 == 0)
	}
	for i, h := range hs[:4] {
		if bot, ok := c.get(h); !ok || bot != (i%2 == 0) {
			t.Fatalf("hash %d of one set: %v %v, want %v true", i, bot, ok, i%2 == 0)
		}
	}
	if _, ok := c.get(hs[4]); ok {
		t.Fatal("a fifth hash found before it was put")
	}
	c.put(hs[4], true)
	kept := 0
	for _, h := range hs[:4] {
		if _, ok := c.get(h); ok {
			kept++
		}
	}
	if bot, ok := c.get(hs[4]); !ok || !bot || kept != 3 {
		t.Fatalf("after a fifth hash: it %v %v, %d of the four kept; want true true, 3", bot, ok, kept)
	}
}

// BenchmarkIsBot: the 355 User-Agents of the set, verdicts remembered
// (the steady state of a site).
func BenchmarkIsBot(b *testing.B) {
	benchBotSource(b, isBot)
}

// BenchmarkMarkedBot and BenchmarkListedCrawler: each source alone over
// the set, as for a User-Agent seen for the first time.
func BenchmarkMarkedBot(b *testing.B) {
	benchBotSource(b, markedBot)
}

func BenchmarkListedCrawler(b *testing.B) {
	benchBotSource(b, listedCrawler)
}

func benchBotSource(b *testing.B, f func([]byte) bool) {
	set := loadUserAgents(b)
	uas := make([][]byte, len(set))
	for i, c := range set {
		uas[i] = []byte(c.ua)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f(uas[i%len(uas)])
	}
}

// BenchmarkIsBotBrowser is the common case: a browser's User-Agent.
func BenchmarkIsBotBrowser(b *testing.B) {
	ua := []byte("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		isBot(ua)
	}
}
