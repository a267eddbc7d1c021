package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"

	"github.com/edgerec/edgerec/index"
)

func runEval(args []string) error {
	fs := flag.NewFlagSet("eval", flag.ExitOnError)
	train := fs.String("train", "", "training events: the history each test user is ranked from")
	test := fs.String("test", "", "test events: what each user went on to do")
	k := fs.Int("k", 10, "cut-off of the ranking metrics")
	asJSON := fs.Bool("json", false, "print one JSON object: precision, recall, map, ndcg, coverage and popularity")
	snap := fs.String("snapshot", "", "evaluate this snapshot; default: build one from -train with the build flags")
	var bf buildFlags
	bf.register(fs)
	_ = fs.Parse(args)
	if *train == "" || *test == "" {
		return fmt.Errorf("-train and -test are required")
	}
	o, err := bf.options()
	if err != nil {
		return err
	}
	if *asJSON {
		o.Log = func(string, ...any) {}
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
		if err := b.ReadEventsFile(*train); err != nil {
			return err
		}
		if _, err := b.Build(tmp); err != nil {
			return err
		}
		dir = tmp
	}
	s, err := index.OpenSnapshot(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	r, err := index.Evaluate(s, *train, *test, index.EvalOptions{K: *k, Weights: o.Weights, MaxBad: max(bf.maxBad, 0)})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	log.Printf("evaluated %d users (%d without history skipped)", r.Users, r.Skipped)
	fmt.Printf("%-12s %9s %9s %9s %9s %9s\n", "model", "MAP", "nDCG@"+fmt.Sprint(*k), "P@"+fmt.Sprint(*k), "R@"+fmt.Sprint(*k), "coverage")
	fmt.Printf("%-12s %9.6f %9.6f %9.6f %9.6f %9.4f\n", s.Manifest().Parameters.Similarity, r.MAP, r.NDCG, r.Precision, r.Recall, r.Coverage)
	p := r.Popularity
	fmt.Printf("%-12s %9.6f %9.6f %9.6f %9.6f %9.4f\n", "popularity", p.MAP, p.NDCG, p.Precision, p.Recall, p.Coverage)
	return nil
}
