package engine

import "bytes"

// Bot detection: crawlers, link-preview fetchers, monitors, scanners,
// headless browsers and command-line HTTP clients get the control and stay
// out of the statistics. testdata/user-agents.tsv holds the real
// User-Agents the rules are tested on (bot_test.go); a marker added here
// goes with a line there.

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
// command-line HTTP client's. An empty User-Agent is not taken for one.
// No allocation: the lower-cased copy lives on the stack.
func isBot(ua []byte) bool {
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
