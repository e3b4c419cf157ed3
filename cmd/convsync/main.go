// Command convsync keeps Messenger conversations of many Facebook Pages in sync: one
// binary, one subcommand per role, so one image serves every role and `all` runs them
// together on one machine. The roles are assembled by package app; this is the command
// line: subcommands, their flags, signals, and the jobs and tools that are not roles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/convsync/convsync/app"
)

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

func commands() map[string]command {
	roleCmd := func(name string, roles ...app.Role) func(context.Context, []string) error {
		return func(ctx context.Context, args []string) error { return app.Run(ctx, name, args, roles...) }
	}
	return map[string]command{
		"all":      {"run every role in one process", roleCmd("all", app.AllRoles()...)},
		"ingest":   {"receive Meta webhooks and append them to the event log", roleCmd("ingest", app.Ingest)},
		"process":  {"fold events into per-page deltas (Kafka transactions)", roleCmd("process", app.Processor)},
		"project":  {"merge deltas into the Postgres read model", roleCmd("project", app.Projector)},
		"api":      {"serve the read API (cache-aside over Postgres)", roleCmd("api", app.API)},
		"migrate":  {"apply database migrations and create Kafka topics; `migrate status` lists them", runMigrate},
		"backfill": {"fetch history and missed messages from the Graph API into the event log (--all or --page ID)", runBackfill},
		"dlq":      {"list dead letters with their reasons (dlq list), or send chosen ones back (dlq requeue)", runDLQ},
		"graphsim": {"serve the Graph API simulator (tests, benchmarks, demo)", runGraphsim},
		"pages":    {"pages import --user-token T: store the Pages a user manages, with their tokens", runPages},
		"replay":   {"rebuild the read model from the event log into fresh tables, then swap them in", runReplay},
		"loadgen":  {"send realistic signed webhooks at a target rate and report latency", runLoadgen},
		"version":  {"print the version", func(context.Context, []string) error { fmt.Println(version); return nil }},
	}
}

var version = "dev"

func usage(commands map[string]command) {
	fmt.Fprintf(os.Stderr, "usage: convsync <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\n`convsync <command> -h` lists a command's flags and environment variables.\n")
}

func main() {
	commands := commands()
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(commands)
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "convsync: unknown command %q\n\n", os.Args[1])
		usage(commands)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "convsync %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
