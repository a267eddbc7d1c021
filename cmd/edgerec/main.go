// Command edgerec is the one binary of edgerec: serve, build, eval, gen, bench, export, snapshot.
package main

import (
	"fmt"
	"log"
	"os"
)

var version = "dev"

const usage = `edgerec — low-latency recommendations and landing-page decisions

Usage:
  edgerec build --events F[,F…] [--items F] --out DIR   build an index snapshot
  edgerec eval  --train F --test F [--k 10] [--json]    offline ranking quality
  edgerec gen   --events F --items F [--n 100000]       synthetic shop data
  edgerec serve [--data DIR] [--addr 127.0.0.1:8080]   serve the HTTP API
  edgerec bench --url U [--rate R] [--scenario S]      open-loop load test (also closed, step)
  edgerec bench compare A.json B.json                  two reports side by side
  edgerec check --config edgerec.yaml                  validate a config file
  edgerec export audience --segment S [--out F]        a segment's consenting members (CSV, NDJSON)
  edgerec snapshot pack [--root DIR] [--out F]         a snapshot as tar.zst, to ship to edge servers
  edgerec snapshot unpack [--root DIR] F               verify and publish a packed snapshot
  edgerec version

Run 'edgerec CMD -h' for the flags of CMD.
`

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "build":
		err = runBuild(args)
	case "eval":
		err = runEval(args)
	case "gen":
		err = runGen(args)
	case "serve":
		err = runServe(args)
	case "bench":
		err = runBench(args)
	case "check":
		err = runCheck(args)
	case "export":
		err = runExport(args)
	case "snapshot":
		err = runSnapshot(args)
	case "version", "-version", "--version":
		fmt.Println("edgerec", version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "edgerec: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "edgerec %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
