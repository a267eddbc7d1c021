package engine

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/index"
	"github.com/edgerec/edgerec/model"
)

// sarBuild configures the build as SAR: Jaccard similarity over all
// co-rated items (dense lists), affinity = rating × 30-day half-life decay.
func sarBuild() index.BuildOptions {
	w := model.Weights{Rating: 1, RatingValue: true, HalfLife: 30 * 86400}
	return index.BuildOptions{K: -1, Similarity: model.SimJaccard, Weights: w, MinSupport: 1}
}

// TestEvaluateSAR reproduces the published SAR figures of the Microsoft
// Recommenders quick start on the ML-100k per-user split, through the
// engine that serves: SAR blends every training item, so the history
// window is the whole history.
func TestEvaluateSAR(t *testing.T) {
	skipLongUnderShort(t)
	train := sharedData(t, "ml100k_split_by_user_train.csv.gz")
	test := sharedData(t, "ml100k_split_by_user_test.csv.gz")
	root := t.TempDir()
	buildRoot(t, root, sarBuild(), "", train)
	r, err := Evaluate(context.Background(), root, train, test, EvalOptions{K: 10, Engine: Options{HistoryWindow: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SAR: %+v", *r)
	f := func(name string, got, want float64) {
		t.Helper()
		if math.Round(got*1e4) != math.Round(want*1e4) {
			t.Errorf("%s = %.6f; published %.6f", name, got, want)
		}
	}
	f("MAP", r.MAP, 0.106959)
	f("nDCG@10", r.NDCG, 0.379533)
	f("P@10", r.Precision, 0.331071)
	f("R@10", r.Recall, 0.176837)
}

// smallRoot builds index's small test snapshot (items a, b, c; twenty
// users who viewed and bought a and b together, half of whom viewed c)
// and returns its root. Its users are s00…s19, so that users of a test's
// own training file are not among them.
func smallRoot(t *testing.T) string {
	t.Helper()
	b, err := index.NewBuilder(index.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.AddItem(&model.Item{ID: "a", Title: "A, the first", Categories: []string{"x", "y"}, Price: 9.5, HasPrice: true, Stock: 3, HasStock: true,
		Attrs: []model.Attr{{Key: "color", Value: "red"}}})
	add := func(user, item string, typ model.EventType, ts int64, basket string) {
		b.AddEvent(&model.Event{User: []byte(user), Item: []byte(item), Type: typ, TS: ts, Basket: []byte(basket)})
	}
	for u := 0; u < 20; u++ {
		user := "s" + string(rune('0'+u/10)) + string(rune('0'+u%10))
		add(user, "a", model.EventView, int64(100+u), "")
		add(user, "b", model.EventView, int64(101+u), "")
		add(user, "a", model.EventPurchase, int64(102+u), "o"+user)
		add(user, "b", model.EventPurchase, int64(102+u), "o"+user)
		if u%2 == 0 {
			add(user, "c", model.EventView, int64(103+u), "")
		}
	}
	root := t.TempDir()
	if _, err := b.Build(root); err != nil {
		t.Fatal(err)
	}
	return root
}

// Evaluation skips bad lines up to MaxBad, as the build does. The
// training file's events are posted (PostTrain): the snapshot is built
// from other data.
func TestEvaluateBadLines(t *testing.T) {
	root := smallRoot(t)
	dir := t.TempDir()
	train := filepath.Join(dir, "train.csv")
	test := filepath.Join(dir, "test.csv")
	must(t, os.WriteFile(train, []byte("user_id,item_id,event,ts,value,basket\nA,a,view,1,,\nB,a,teleport,2,,\nB,a,view,3,,\n"), 0o644))
	must(t, os.WriteFile(test, []byte("user_id,item_id,event,ts,value,basket\nA,b,view,4,,\nB,b,view,5,,\n"), 0o644))
	ctx := context.Background()
	if _, err := Evaluate(ctx, root, train, test, EvalOptions{PostTrain: true}); !errors.Is(err, index.ErrTooManyBadLines) || !strings.Contains(err.Error(), "train.csv:3:") {
		t.Fatalf("MaxBad 0: %v", err)
	}
	r, err := Evaluate(ctx, root, train, test, EvalOptions{MaxBad: 1, PostTrain: true})
	if err != nil || r.Users != 2 || r.Precision == 0 {
		t.Fatalf("MaxBad 1: %+v, %v", r, err)
	}
}

// TestDefaultBuildItemSplit holds the quality bar of the default build on
// the ML-100k per-item split, as served, and checks that eval's figure is
// the served one: the histories the snapshot carries give what posting
// the training events gives.
func TestDefaultBuildItemSplit(t *testing.T) {
	skipLongUnderShort(t)
	train := sharedData(t, "ml100k_split_by_item_train.csv.gz")
	test := sharedData(t, "ml100k_split_by_item_test.csv.gz")
	root := t.TempDir()
	m := buildRoot(t, root, index.BuildOptions{}, "", train)
	if got := m.Parameters.Similarity; got != "ease" {
		t.Fatalf("default similarity %s; want ease", got)
	}
	ctx := context.Background()
	r, err := Evaluate(ctx, root, train, test, EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default build: %+v", *r)
	if r.NDCG < 0.45 {
		t.Fatalf("nDCG@10 = %.4f; the bar is 0.45", r.NDCG)
	}
	if r.Popularity.NDCG >= r.NDCG/1.5 {
		t.Fatalf("popularity nDCG %.4f too close to the model's %.4f", r.Popularity.NDCG, r.NDCG)
	}
	if math.Abs(r.Popularity.NDCG-0.2523) > 0.005 {
		t.Errorf("popularity nDCG %.6f; the baseline of the item split is 0.252333", r.Popularity.NDCG)
	}
	if r.NoHistory != 0 {
		t.Errorf("%d test users without a history", r.NoHistory)
	}
	// Serving: the same snapshot, its users' events posted as a shop
	// sends them, on top of the imported histories.
	p, err := Evaluate(ctx, root, train, test, EvalOptions{PostTrain: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("posted: %+v", *p)
	if math.Abs(p.NDCG-r.NDCG) > 0.001 {
		t.Fatalf("nDCG@10 %.6f with the training events posted; %.6f from the snapshot's histories", p.NDCG, r.NDCG)
	}
	if *p.Popularity != *r.Popularity {
		t.Errorf("popularity %+v posted; %+v", p.Popularity, r.Popularity)
	}
}
