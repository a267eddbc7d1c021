package main

import (
	"fmt"
	"time"

	"github.com/edgerec/edgerec/bench"
)

func runGen(c *command, args []string) error {
	fs := c.flagSet()
	events := fs.String("events", "", "events file to write; .gz or .zst suffix compresses")
	items := fs.String("items", "", "catalog file to write; .gz or .zst suffix compresses")
	n := fs.Int64("n", 100_000, "number of events")
	nItems := fs.Int("items-n", 0, "catalog size; 0 derives it from -n")
	nUsers := fs.Int("users", 0, "number of users; 0 derives it from -n")
	cats := fs.Int("categories", 0, "number of categories; 0 derives it from the catalog size")
	seed := fs.Uint64("seed", 1, "random seed: the same flags write the same bytes")
	days := fs.Int("days", 60, "time span of the events in days")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *events == "" || *items == "" {
		return fmt.Errorf("-events and -items are required")
	}
	start := time.Now()
	st, err := bench.GenFiles(*events, *items, bench.GenOptions{
		Events: *n, Items: *nItems, Users: *nUsers, Categories: *cats, Seed: *seed, Days: *days,
	})
	if err != nil {
		return err
	}
	fmt.Printf("wrote %d events (%d users, %d sessions, %d baskets) to %s and %d items to %s in %.2fs\n",
		st.Events, st.Users, st.Sessions, st.Baskets, *events, st.Items, *items, time.Since(start).Seconds())
	return nil
}
