package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgerec/edgerec/engine"
	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

func runEval(c *command, args []string) error {
	fs := c.flagSet()
	train := fs.String("train", "", "training events: the history each test user is ranked from; the snapshot is built from them unless -snapshot")
	test := fs.String("test", "", "test events: what each user went on to do")
	k := fs.Int("k", 10, "cut-off of the ranking metrics")
	asJSON := fs.Bool("json", false, "print one JSON object: precision, recall, map, ndcg, coverage, users and popularity")
	snap := fs.String("snapshot", "", "evaluate this snapshot (a root or version directory); -train, if given, is posted to it as live events")
	history := fs.Int("history", engine.DefaultHistoryWindow, "newest history entries of a user blended into their recommendations, as edgerec serve's -history")
	configPath := fs.String("config", "", "edgerec.yaml: evaluate with its universal holdout, as edgerec serve -config serves")
	serverURL := fs.String("url", "", "evaluate a running server instead: ask GET /v1/users/{u}/recommendations of http://host:port for every test user; with -train and -api-key, post the training events first")
	apiKey := fs.String("api-key", "", "the server's API key, to post -train with -url")
	var bf buildFlags
	bf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *test == "" || *train == "" && *snap == "" && *serverURL == "" {
		return fmt.Errorf("-test is required, and -train (or -snapshot, or -url)")
	}
	if *k < 1 || *history < 1 {
		return fmt.Errorf("-k and -history must be at least 1")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *serverURL != "" {
		r, err := evalURL(ctx, *serverURL, *apiKey, *train, *test, *k)
		if err != nil {
			return err
		}
		return printEval(os.Stdout, r, "served", *k, *asJSON)
	}
	o, err := bf.options()
	if err != nil {
		return err
	}
	if *asJSON {
		o.Log = func(string, ...any) {}
	}
	eo := engine.EvalOptions{K: *k, MaxBad: max(bf.maxBad, 0), PostTrain: *snap != "",
		Engine: engine.Options{HistoryWindow: *history}}
	if *configPath != "" {
		if eo.Engine.Config, err = engine.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	dir := *snap
	if dir == "" {
		tmp, err := os.MkdirTemp("", "edgerec-eval-")
		if err != nil {
			return fmt.Errorf("cannot create a temporary snapshot dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		b, err := index.NewBuilder(o)
		if err != nil {
			return err
		}
		if err := readFile(ctx, *train, b.ReadEvents); err != nil {
			return err
		}
		if _, err := b.BuildContext(ctx, tmp); err != nil {
			return err
		}
		dir = tmp
	}
	s, err := index.OpenSnapshot(dir)
	if err != nil {
		return err
	}
	name := s.Manifest().Parameters.Similarity
	_ = s.Close()
	r, err := engine.Evaluate(ctx, dir, *train, *test, eo)
	if err != nil {
		return err
	}
	return printEval(os.Stdout, r, name, *k, *asJSON)
}

// printEval prints r as a table (model and popularity rows) or as JSON.
func printEval(w io.Writer, r *engine.EvalResult, name string, k int, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(os.Stderr, "evaluated %d users (%d without a history: answered with popular items)\n", r.Users, r.NoHistory)
	fmt.Fprintf(w, "%-12s %9s %9s %9s %9s %9s\n", "model", "MAP", "nDCG@"+strconv.Itoa(k), "P@"+strconv.Itoa(k), "R@"+strconv.Itoa(k), "coverage")
	row := func(name string, m model.RankingMetrics) {
		fmt.Fprintf(w, "%-12s %9.6f %9.6f %9.6f %9.6f %9.4f\n", name, m.MAP, m.NDCG, m.Precision, m.Recall, m.Coverage)
	}
	row(name, r.RankingMetrics)
	if r.Popularity != nil {
		row("popularity", *r.Popularity)
	}
	return nil
}

// evalURL measures a running server as its users get it: it posts the
// training events (with a key), then asks every test user's
// recommendations over HTTP and scores them as engine.Evaluate does.
// Coverage counts distinct items answered, over those of the training
// and test files.
func evalURL(ctx context.Context, base, key, trainPath, testPath string, k int) (*engine.EvalResult, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http://host:port", base)
	}
	base = strings.TrimRight(base, "/")
	client := &http.Client{Timeout: time.Minute}
	ids := map[string]uint32{}
	num := func(id string) uint32 {
		n, ok := ids[id]
		if !ok {
			n = uint32(len(ids))
			ids[id] = n
		}
		return n
	}
	if trainPath != "" {
		if key == "" {
			return nil, fmt.Errorf("-url with -train needs -api-key to post the training events")
		}
		if err := postTrain(ctx, client, base, key, trainPath, num); err != nil {
			return nil, err
		}
	}
	test := map[string]map[uint32]struct{}{}
	var order []string
	if err := index.EachEvent(testPath, 0, new(int), func(ev *model.Event) error {
		m, ok := test[string(ev.User)]
		if !ok {
			m = map[uint32]struct{}{}
			test[string(ev.User)] = m
			order = append(order, string(ev.User))
		}
		m[num(string(ev.Item))] = struct{}{}
		return nil
	}); err != nil {
		return nil, err
	}
	acc := model.NewMetricsAcc(k, len(ids))
	res := &engine.EvalResult{}
	var top []model.Neighbour
	for _, user := range order {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var ans struct {
			Items []struct {
				ID     string `json:"id"`
				Reason string `json:"reason"`
			} `json:"items"`
		}
		if err := getJSON(ctx, client, base+"/v1/users/"+url.PathEscape(user)+"/recommendations?k="+strconv.Itoa(k), &ans); err != nil {
			return nil, err
		}
		top = top[:0]
		history := false
		for _, it := range ans.Items {
			top = append(top, model.Neighbour{Item: num(it.ID)})
			history = history || it.Reason != "popular"
		}
		if !history {
			res.NoHistory++
		}
		rel := test[user]
		acc.AddUser(top, func(item uint32) bool { _, ok := rel[item]; return ok }, len(rel))
	}
	res.RankingMetrics = acc.Result()
	return res, nil
}

// postTrain posts the events of path to the server in batches of 1000,
// as NDJSON.
func postTrain(ctx context.Context, client *http.Client, base, key, path string, num func(string) uint32) error {
	var buf bytes.Buffer
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		req, err := http.NewRequestWithContext(ctx, "POST", base+"/v1/events", bytes.NewReader(buf.Bytes()))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/x-ndjson")
		if err := do(client, req, nil); err != nil {
			return err
		}
		buf.Reset()
		n = 0
		return nil
	}
	enc := json.NewEncoder(&buf)
	err := index.EachEvent(path, 0, new(int), func(ev *model.Event) error {
		num(string(ev.Item))
		e := map[string]any{"user_id": string(ev.User), "item_id": string(ev.Item), "event": ev.Type.String(), "ts": ev.TS}
		if ev.HasValue {
			e["value"] = ev.Value
		}
		if len(ev.Basket) > 0 {
			e["basket"] = string(ev.Basket)
		}
		if err := enc.Encode(e); err != nil {
			return err
		}
		if n++; n == 1000 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// getJSON GETs uri and decodes its JSON answer into v.
func getJSON(ctx context.Context, client *http.Client, uri string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", uri, nil)
	if err != nil {
		return err
	}
	return do(client, req, v)
}

// do sends req and decodes a 2xx answer into v (when not nil); any other
// status is an error carrying the server's message.
func do(client *http.Client, req *http.Request, v any) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the server: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error struct{ Message string } }
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, msg)
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(body, v)
}
