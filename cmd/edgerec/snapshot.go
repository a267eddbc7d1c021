package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edgerec/edgerec/index"
)

// runSnapshotPack packs a built snapshot for shipping to edge servers.
func runSnapshotPack(c *command, args []string) error {
	fs := c.flagSet()
	root := fs.String("root", "data/run/snapshots", "snapshot root (its CURRENT version is packed) or a version directory (env EDGEREC_ROOT)")
	out := fs.String("out", "", "the tar.zst to write; default stdout (env EDGEREC_OUT)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := envTwins(fs); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var v string
	err := writeOut(*out, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var err error
		if v, err = index.PackSnapshot(bw, *root); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "packed snapshot %s of %s\n", v, *root)
	return nil
}

// runSnapshotUnpack publishes a packed snapshot on an edge server's root.
func runSnapshotUnpack(c *command, args []string) error {
	fs := c.flagSet()
	root := fs.String("root", "data/run/snapshots", "snapshot root to publish into as its CURRENT version; then POST /v1/admin/snapshots loads it (env EDGEREC_ROOT)")
	maxGB := fs.Int64("max-gb", 64, "largest unpacked snapshot, GiB (env EDGEREC_MAX_GB)")
	allowOlder := fs.Bool("allow-older", false, "publish a version older than the root's CURRENT: a roll back (env EDGEREC_ALLOW_OLDER)")
	keep := fs.Int("keep", index.DefaultKeep, "versions kept in the root after the publish: the newest N, plus the one CURRENT names and any a server on this machine serves; 0 keeps all (env EDGEREC_KEEP)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := envTwins(fs); err != nil {
		return err
	}
	if *maxGB <= 0 {
		return fmt.Errorf("--max-gb %d: want a positive number of GiB", *maxGB)
	}
	if *keep < 0 {
		return fmt.Errorf("--keep %d: must not be negative (0 keeps every version)", *keep)
	}
	logger := newLogger()
	if fs.NArg() != 1 {
		return fmt.Errorf("want one packed snapshot: edgerec snapshot unpack [--root DIR] FILE.tar.zst (- for stdin)")
	}
	var r io.Reader = os.Stdin
	name := fs.Arg(0)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	dir, err := index.UnpackSnapshot(bufio.NewReaderSize(r, 1<<20), *root, index.UnpackOptions{
		MaxBytes: *maxGB << 30, AllowOlder: *allowOlder, Keep: keepOption(*keep),
		Log: func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	})
	if errors.Is(err, index.ErrSnapshotExists) {
		// Shipping the same archive twice (a retried deploy) changes nothing.
		cur, cerr := index.ResolveSnapshot(*root)
		if cerr != nil {
			cur = "none"
		}
		fmt.Fprintf(os.Stderr, "%s: %s is already in %s (CURRENT: %s): nothing to do\n", name, filepath.Base(dir), *root, filepath.Base(cur))
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprintf(os.Stderr, "unpacked, verified and published %s\n", dir)
	return nil
}
