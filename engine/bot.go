package engine

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"
	"unsafe"

	"github.com/x-way/crawlerdetect"
)

// Bot detection: crawlers, link-preview fetchers, monitors, scanners,
// headless browsers and command-line HTTP clients get the control and stay
// out of the statistics. Two sources, either is enough:
//
//   - our markers below: the bots a shop sees most (search and AI
//     crawlers, link previews, uptime monitors, HTTP clients), found in
//     about 0.2 µs with no allocation;
//   - the crawler list of github.com/x-way/crawlerdetect (a Go port of
//     JayBizzle/Crawler-Detect, some 1,800 patterns kept up to date by
//     their users): the long tail of named services, at 100-150 µs a look
//     (one large regular expression).
//
// The verdict is remembered by a hash of the User-Agent (botVerdicts), so
// the list's cost is paid once per distinct User-Agent, not per request.
// testdata/user-agents.tsv holds the real User-Agents both are tested on
// (bot_test.go); a marker added here goes with a line there.

// botMarkers are looked for anywhere in the lower-cased User-Agent.
var botMarkers = [...]string{
	// Crawlers name themselves: Googlebot, bingbot, GPTBot, ClaudeBot,
	// Applebot, Twitterbot, robot, yandex.com/bots; Baiduspider,
	// Bytespider, crawler, Yahoo! Slurp.
	"bot", "crawl", "spider", "slurp",
	// Crawlers link their documentation or give a mail address; browsers
	// do neither.
	"http://", "https://", "+http", // and '@' (hasBotMarker)
	// Link previews: BingPreview, MicrosoftPreview, SkypeUriPreview,
	// Google Web Preview; Facebook, Meta, Embedly, Iframely, Mastodon.
	"preview", "facebookexternalhit", "facebookcatalog", "externalagent", "embedly", "iframely", "mastodon/",
	// Google's fetchers without "bot": Google-InspectionTool, Storebot-Google,
	// Mediapartners-Google, FeedFetcher-Google, APIs-Google, GoogleOther,
	// Google Favicon, GoogleHC.
	"google-", "-google", "googleother", "google favicon", "googlehc",
	// User-triggered fetches of AI assistants; other search engines.
	"chatgpt-user", "perplexity-user", "qwantify", "yeti/", "ia_archiver",
	// Headless browsers, page-speed and uptime monitors, health checks.
	"headless", "phantomjs", "lighthouse", "ptst/", "synthetics", "uptime-kuma", "check_http", "blackbox exporter",
	"kube-probe", "elb-healthchecker", "w3c_validator", "w3c-checklink",
	// Scanners.
	"censysinspect", "nmap scripting", "zgrab", "masscan", "expanse, a palo alto",
	// HTTP clients and scrapers.
	"curl/", "wget/", "python-", "python/", "aiohttp", "go-http-client", "apache-httpclient", "commons-httpclient",
	"java/", "node-fetch", "axios/", "libwww-perl", "postmanruntime", "insomnia/", "httpie/", "scrapy", "colly",
	"apache-nutch", "faraday v", "http.rb/",
}

// botProducts are whole User-Agents (up to the first '/' or space) of HTTP
// clients too generic to look for inside another User-Agent, and of link
// previews whose name is an app's (WhatsApp/2.23.20.0).
var botProducts = [...]string{"curl", "wget", "node", "undici", "ruby", "java", "python", "fasthttp", "go", "whatsapp"}

// notBot are device names that hold a marker: the Cubot phones.
var notBot = [...]string{"cubot"}

// botIndex lists botMarkers by first byte: where botPairs lets a
// position through, only the markers that start with its byte are
// compared.
var botIndex = func() (t [256][]string) {
	for _, m := range botMarkers {
		if len(m) < 2 {
			panic("bot marker shorter than two bytes: " + m)
		}
		t[m[0]] = append(t[m[0]], m)
	}
	return t
}()

// botPairs has a bit for the first two bytes of each marker (every
// marker has two or more): most positions of a browser's User-Agent are
// passed over on one look-up.
var botPairs = func() (t [1 << 16 / 64]uint64) {
	for _, m := range botMarkers {
		pair := uint16(m[0])<<8 | uint16(m[1])
		t[pair>>6] |= 1 << (pair & 63)
	}
	return t
}()

// botWindow bounds the lower-cased copy isBot scans at a time (on the
// stack); a longer User-Agent is scanned in windows that overlap by
// botOverlap, more than the longest marker.
const (
	botWindow  = 512
	botOverlap = 32
)

// isBot reports whether the User-Agent is a crawler's, a link-preview
// fetcher's, a monitor's, a scanner's, a headless browser's or a
// command-line HTTP client's: by our markers or the crawler list. An
// empty User-Agent is not taken for one. No allocation once the
// User-Agent's verdict is remembered.
func isBot(ua []byte) bool {
	if len(ua) == 0 {
		return false
	}
	h := maphash.Bytes(botSeed, ua)
	if bot, ok := botVerdicts.get(h); ok {
		return bot
	}
	bot := markedBot(ua) || listedCrawler(ua)
	botVerdicts.put(h, bot)
	return bot
}

// listedCrawler asks the crawler list. Desktop apps built on Electron
// (Slack's, which the list names) have a person behind them.
func listedCrawler(ua []byte) bool {
	if bytes.Contains(ua, []byte("Electron/")) {
		return false
	}
	// The list neither keeps nor changes its argument.
	return crawlerdetect.IsCrawler(unsafe.String(unsafe.SliceData(ua), len(ua)))
}

var botSeed = maphash.MakeSeed()

// botVerdicts remembers isBot's verdicts, lock-free: a set of four slots
// per value of the hash's low 14 bits (64K verdicts, 512 KiB), a slot
// holding the hash with its lowest two bits set aside: bit 1 set (never
// 0, the empty slot), bit 0 the verdict. A full set gives one slot to a
// new User-Agent. A busy site's few thousand User-Agents fit without two
// of them taking turns in one slot (each turn a look-up in the list);
// a flood of new ones evicts old ones, which are only asked again.
var botVerdicts verdictCache

const verdictSets = 1 << 14

type verdictCache [verdictSets][4]atomic.Uint64

func (c *verdictCache) get(h uint64) (bot, ok bool) {
	tag := h&^3 | 2
	set := &c[h&(verdictSets-1)]
	for i := range set {
		if v := set[i].Load(); v&^1 == tag {
			return v&1 == 1, true
		}
	}
	return false, false
}

func (c *verdictCache) put(h uint64, bot bool) {
	tag := h&^3 | 2
	v := tag
	if bot {
		v |= 1
	}
	set := &c[h&(verdictSets-1)]
	for i := range set {
		if w := set[i].Load(); w == 0 || w&^1 == tag {
			set[i].Store(v)
			return
		}
	}
	set[h>>32&3].Store(v)
}

// markedBot is isBot by our markers alone. No allocation: the lower-cased
// copy lives on the stack.
func markedBot(ua []byte) bool {
	var buf [botWindow]byte
	first := true
	for {
		n := min(len(ua), botWindow)
		low := buf[:n]
		for i, c := range ua[:n] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			low[i] = c
		}
		if first && isBotProduct(low) || hasBotMarker(low) {
			return true
		}
		if len(ua) <= botWindow {
			return false
		}
		ua, first = ua[botWindow-botOverlap:], false
	}
}

// isBotProduct: the whole User-Agent, or its part before the first '/' or
// space, is one of botProducts.
func isBotProduct(low []byte) bool {
	if i := bytes.IndexAny(low, "/ "); i >= 0 {
		low = low[:i]
	}
	for _, p := range botProducts {
		if string(low) == p {
			return true
		}
	}
	return false
}

// hasBotMarker reports whether low holds one of botMarkers, or an '@',
// outside notBot.
func hasBotMarker(low []byte) bool {
	if bytes.IndexByte(low, '@') >= 0 {
		return true
	}
	for i := 0; i+1 < len(low); i++ {
		if pair := uint16(low[i])<<8 | uint16(low[i+1]); botPairs[pair>>6]&(1<<(pair&63)) == 0 {
			continue
		}
		for _, m := range botIndex[low[i]] {
			if len(low)-i >= len(m) && string(low[i:i+len(m)]) == m && !inNotBot(low, i) {
				return true
			}
		}
	}
	return false
}

// inNotBot reports whether position i of low lies in one of notBot.
func inNotBot(low []byte, i int) bool {
	for _, w := range notBot {
		for j := max(0, i-len(w)+1); j <= i && j+len(w) <= len(low); j++ {
			if string(low[j:j+len(w)]) == w {
				return true
			}
		}
	}
	return false
}
