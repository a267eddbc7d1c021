package engine

import (
	"bufio"
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
}

func BenchmarkIsBot(b *testing.B) {
	set := loadUserAgents(b)
	uas := make([][]byte, len(set))
	for i, c := range set {
		uas[i] = []byte(c.ua)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		isBot(uas[i%len(uas)])
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
