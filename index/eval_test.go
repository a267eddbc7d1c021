package index

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgerec/edgerec/model"
)

// sarOptions configure the build as SAR: Jaccard similarity over all
// co-rated items (dense lists), affinity = rating × 30-day half-life decay.
func sarOptions() (BuildOptions, EvalOptions) {
	w := model.Weights{Rating: 1, RatingValue: true, HalfLife: 30 * 86400}
	return BuildOptions{K: -1, Similarity: model.SimJaccard, Weights: w, MinSupport: 1},
		EvalOptions{K: 10, Weights: w}
}

// TestEvaluateSAR reproduces the published SAR figures of the Microsoft
// Recommenders quick start on the ML-100k per-user split.
func TestEvaluateSAR(t *testing.T) {
	skipLongUnderShort(t)
	train := sharedData(t, "ml100k_split_by_user_train.csv.gz")
	test := sharedData(t, "ml100k_split_by_user_test.csv.gz")
	bo, eo := sarOptions()
	s := buildSnapshot(t, bo, "", train)
	r, err := Evaluate(s, train, test, eo)
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

// Evaluation skips bad lines up to MaxBad, as the build does.
func TestEvaluateBadLines(t *testing.T) {
	root := t.TempDir()
	if _, err := smallBuilder(t).Build(root); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	train := filepath.Join(dir, "train.csv")
	test := filepath.Join(dir, "test.csv")
	must(t, os.WriteFile(train, []byte("user_id,item_id,event,ts,value,basket\nA,a,view,1,,\nB,a,teleport,2,,\nB,a,view,3,,\n"), 0o644))
	must(t, os.WriteFile(test, []byte("user_id,item_id,event,ts,value,basket\nA,b,view,4,,\nB,b,view,5,,\n"), 0o644))
	if _, err := Evaluate(s, train, test, EvalOptions{}); !errors.Is(err, ErrTooManyBadLines) || !strings.Contains(err.Error(), "train.csv:3:") {
		t.Fatalf("MaxBad 0: %v", err)
	}
	r, err := Evaluate(s, train, test, EvalOptions{MaxBad: 1})
	if err != nil || r.Users != 2 || r.Precision == 0 {
		t.Fatalf("MaxBad 1: %+v, %v", r, err)
	}
}
