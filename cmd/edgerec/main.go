// Command edgerec is the one binary of edgerec: serve, build, eval, gen, bench, export, snapshot.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
)

var version = "dev"

// command is a subcommand of edgerec. The table below is the only place
// commands are named: main dispatches through it, the usage is printed
// from it, and TestHelp asks every entry for its help.
type command struct {
	name    string // as typed after its parent: "pack" under "snapshot"
	args    string // the synopsis of its arguments, for the usage
	summary string // one line, for the usage
	about   string // the paragraph its help prints above the flags
	// run runs the command with the arguments after its name. Nil for a
	// group, which only dispatches to its subs.
	run  func(c *command, args []string) error
	subs []*command
	path string // "snapshot pack": the name with its parents', set by init
}

// commands is every subcommand, in the order of the usage. It is set in
// init because the run functions read it back (help).
var commands []*command

func init() {
	commands = []*command{
		{name: "build", args: "--events F[,F…] [--items F] --out DIR", summary: "build an index snapshot", run: runBuild,
			about: "Reads event logs and a catalog (CSV or NDJSON; plain, gzip or zstd), computes the item lists and\n" +
				"publishes a new verified snapshot version under --out atomically."},
		{name: "eval", args: "--train F --test F [--k 10] [--json]", summary: "offline ranking quality, as served", run: runEval,
			about: "Builds a snapshot from --train (or takes --snapshot, or asks a running server with --url), serves it\n" +
				"through the engine as edgerec serve would, and scores every test user's recommendations."},
		{name: "gen", args: "--events F --items F [--n 100000]", summary: "synthetic shop data", run: runGen,
			about: "Writes a deterministic synthetic shop: an event log and its catalog (.gz and .zst suffixes compress)."},
		{name: "serve", args: "[--data DIR] [--addr 127.0.0.1:8080]", summary: "serve the HTTP API", run: runServe,
			about: "Serves DIR/snapshots' CURRENT snapshot with the state store DIR/state. SIGTERM drains, SIGHUP reloads\n" +
				"--config. Every flag has an environment twin: --api-key and EDGEREC_API_KEY, and so on."},
		{name: "health", args: "[--url http://127.0.0.1:8080/readyz]", summary: "probe a server: exit 0 when it answers 2xx", run: runHealth,
			about: "GETs a server's /readyz (or --url) and exits 0 on a 2xx answer, 1 otherwise: a health check for\n" +
				"images without curl (the Dockerfile's HEALTHCHECK)."},
		{name: "bench", args: "--url U [--rate R] [--scenario S]", summary: "open-loop load test (also closed, step)", run: runBench,
			about: "Loads a server open loop (latency from each request's intended send time), closed loop or by steps.",
			subs: []*command{
				{name: "compare", args: "A.json B.json", summary: "two reports side by side", run: runBenchCompare,
					about: "Prints two reports of edgerec bench --json (or --out's report.json) side by side, with B/A ratios."},
				{name: "static", args: "[--addr 127.0.0.1:8081] [--size 1200]", summary: "a fixed-body server: the floor make bench compares with", run: runBenchStatic,
					about: "Serves one fixed body for every request: the floor edgerec is measured against."},
			}},
		{name: "check", args: "--config edgerec.yaml", summary: "validate a config file", run: runCheck,
			about: "Validates a config file as edgerec serve would load it; errors name the file and line."},
		{name: "export", summary: "a segment's consenting members",
			subs: []*command{
				{name: "audience", args: "--segment S [--out F]", summary: "a segment's consenting members (CSV, NDJSON)", run: runExportAudience,
					about: "Writes a segment's consenting members, from the state store, or through a running server with --url."},
			}},
		{name: "snapshot", summary: "ship snapshots to edge servers",
			subs: []*command{
				{name: "pack", args: "[--root DIR] [--out F]", summary: "a snapshot as tar.zst, to ship to edge servers", run: runSnapshotPack,
					about: "Writes the root's CURRENT snapshot (or a version directory) as a zstd tar."},
				{name: "unpack", args: "[--root DIR] F", summary: "verify and publish a packed snapshot", run: runSnapshotUnpack,
					about: "Verifies a packed snapshot (F, or - for stdin) as the server would, then publishes it as the root's\n" +
						"CURRENT version. A version the root already holds is a no-op."},
			}},
		{name: "version", summary: "print the version", run: runVersion,
			about: "Prints edgerec's version (make build stamps it from git describe)."},
		{name: "help", args: "[CMD]", summary: "this usage, or a command's help", run: runHelp,
			about: "Prints the usage, or with a command the help that 'edgerec CMD -h' prints."},
	}
	var setPaths func(parent string, cs []*command)
	setPaths = func(parent string, cs []*command) {
		for _, c := range cs {
			c.path = strings.TrimSpace(parent + " " + c.name)
			setPaths(c.path, c.subs)
		}
	}
	setPaths("", commands)
}

// errHelp says a command printed its help as asked: exit 0.
var errHelp = errors.New("help requested")

// usageError is a command line a command cannot run (a bad flag, a
// missing subcommand): exit 2, as the flag package does. msg names the
// command ("edgerec build: flag provided but not defined: -x"); help,
// when set, prints the command's help on stderr after it.
type usageError struct {
	msg  string
	help func()
}

func (e *usageError) Error() string { return e.msg }

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if len(os.Args) < 2 {
		printUsage(os.Stderr)
		os.Exit(2)
	}
	args := os.Args[1:]
	if args[0] == "-version" || args[0] == "--version" {
		args[0] = "version"
	}
	os.Exit(exitCode(args[0], dispatch(&command{subs: commands}, args)))
}

// exitCode reports err and returns the process's exit code: 0 after
// help, 2 for a bad command line, 1 for any other failure.
func exitCode(name string, err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, ue.msg)
		if ue.help != nil {
			fmt.Fprintln(os.Stderr)
			ue.help()
		}
		return 2
	}
	fmt.Fprintf(os.Stderr, "edgerec %s: %v\n", name, err)
	return 1
}

// dispatch runs the sub of c that args[0] names with the rest of args, or
// c itself with all of args.
func dispatch(c *command, args []string) error {
	if len(args) > 0 {
		if sub := c.sub(args[0]); sub != nil {
			return dispatch(sub, args[1:])
		}
	}
	if c.run != nil {
		return c.run(c, args)
	}
	// A group: edgerec, edgerec snapshot, edgerec export.
	if len(args) > 0 && isHelp(args[0]) {
		c.printHelp(os.Stdout)
		return errHelp
	}
	help := func() { c.printHelp(os.Stderr) }
	if len(args) == 0 {
		return &usageError{c.display() + ": want a subcommand", help}
	}
	return &usageError{fmt.Sprintf("%s: unknown command %q", c.display(), args[0]), help}
}

func (c *command) sub(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

func (c *command) display() string { return strings.TrimSpace("edgerec " + c.path) }

// isHelp reports whether arg asks for help the way flag.Parse understands.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "--h", "-help", "--help", "help":
		return true
	}
	return false
}

// printUsage prints edgerec's usage: every command of the table.
func printUsage(w io.Writer) {
	fmt.Fprint(w, "edgerec — low-latency recommendations and landing-page decisions\n\nUsage:\n")
	printCommands(w, commands)
	fmt.Fprint(w, "\nRun 'edgerec CMD -h' (or 'edgerec help CMD') for the flags of CMD.\n")
}

// printCommands prints one line for every runnable command under cs.
func printCommands(w io.Writer, cs []*command) {
	for _, c := range cs {
		if c.run != nil {
			fmt.Fprintf(w, "  %-60s %s\n", strings.TrimSpace("edgerec "+c.path+" "+c.args), c.summary)
		}
		printCommands(w, c.subs)
	}
}

// printHelp prints the help of a group (c.run is nil): its usage line
// and its commands. A runnable command's help is its flag set's Usage,
// printed by parseFlags, since only its run function knows its flags.
func (c *command) printHelp(w io.Writer) {
	if c.path == "" {
		printUsage(w)
		return
	}
	fmt.Fprintf(w, "Usage: %s CMD\n\n%s.\n\nCommands:\n", c.display(), strings.ToUpper(c.summary[:1])+c.summary[1:])
	printCommands(w, c.subs)
	fmt.Fprintf(w, "\nRun '%s CMD -h' for the flags of CMD.\n", c.display())
}

// flagSet returns the flag set of c. Its Usage prints c's help to the
// set's output; parseFlags chooses that output.
func (c *command) flagSet() *flag.FlagSet {
	fs := flag.NewFlagSet(c.path, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace(c.display()+" "+c.args), c.about)
		if len(c.subs) > 0 {
			fmt.Fprintln(w, "\nSubcommands:")
			printCommands(w, c.subs)
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args into fs. Help (-h, --help) goes to stdout and
// returns errHelp; a bad flag prints the error and the help on stderr
// and returns a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // Parse would print the error and usage; we choose where
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(os.Stdout)
		fs.Usage()
		return errHelp
	}
	fs.SetOutput(os.Stderr)
	return &usageError{fmt.Sprintf("edgerec %s: %v", fs.Name(), err), fs.Usage}
}

func runVersion(c *command, args []string) error {
	fs := c.flagSet()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{msg: fmt.Sprintf("edgerec version: unexpected argument %q", fs.Arg(0))}
	}
	fmt.Println("edgerec", version)
	return nil
}

// runHelp prints the usage, or the help of the command its arguments
// name ("edgerec help snapshot pack").
func runHelp(c *command, args []string) error {
	fs := c.flagSet()
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	target := &command{subs: commands}
	for _, a := range fs.Args() {
		sub := target.sub(a)
		if sub == nil {
			return &usageError{msg: fmt.Sprintf("edgerec help: %s has no command %q", target.display(), a)}
		}
		target = sub
	}
	return dispatch(target, []string{"-h"})
}
