// Command prereg is the one binary of prereg: the servers (serve, dev,
// demo), the operator's and auditor's tools (migrate, campaign load,
// allocate, report, check, outbox), the simulated world (sim, loadgen) and
// the whole-system benchmarks (bench). Run `prereg help` for the list.
//
// Exit codes: 0 ok, 1 any other failure, 2 usage error, 3 an invariant
// failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/prereg/prereg/config"
)

// Exit codes of the outside contract.
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitInvariant = 3
)

// command is one subcommand. Subcommands register themselves from the file
// that implements them, so that each lives beside its own flags and help.
type command struct {
	name    string // "campaign load", "bench intake"
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("prereg: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// usageError is a bad command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// invariantError is a failed invariant: exit 3.
type invariantError struct{ names []string }

func (e *invariantError) Error() string {
	return "invariant failed: " + strings.Join(e.names, ", ")
}

func main() {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	os.Exit(run(env, os.Args[1:]))
}

// run executes a command line and returns the exit code.
func run(env *Env, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if env.Logger == nil {
		env.Logger = config.NewLogger(env.Stderr, env.Getenv)
	}
	cmd, rest, ok := lookup(args)
	if !ok {
		if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			printHelp(env.Stdout)
			if len(args) == 0 {
				return exitUsage
			}
			return exitOK
		}
		fmt.Fprintf(env.Stderr, "prereg: unknown command %q\n\n", strings.Join(args, " "))
		printHelp(env.Stderr)
		return exitUsage
	}
	err := cmd.run(ctx, env, rest)
	var ue *usageError
	var ie *invariantError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "prereg %s: %s\n(run 'prereg %s -h' for help)\n", cmd.name, ue.msg, cmd.name)
		return exitUsage
	case errors.As(err, &ie):
		fmt.Fprintf(env.Stderr, "prereg %s: %s\n", cmd.name, ie.Error())
		return exitInvariant
	default:
		fmt.Fprintf(env.Stderr, "prereg %s: %v\n", cmd.name, err)
		return exitFailure
	}
}

// lookup finds the longest registered command that prefixes args.
func lookup(args []string) (command, []string, bool) {
	for n := min(len(args), 3); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:], true
		}
	}
	return command{}, nil, false
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "prereg: pre-registration for scarce public slots, surge-proof.")
	fmt.Fprintln(w, "\nUsage: prereg COMMAND [flags]   (prereg COMMAND -h for a command's flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-22s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEnvironment: DATABASE_URL (unset: local server, else a private cluster; 'private' forces it),")
	fmt.Fprintln(w, "NATS_URL (unset: embedded JetStream for demo/dev), PREREG_HMAC_KEY, PREREG_ENC_KEY,")
	fmt.Fprintln(w, "PREREG_ADMIN_TOKENS (role:token,...); secrets also as *_FILE. Exit codes: 0 ok, 1 failure,")
	fmt.Fprintln(w, "2 usage, 3 invariant failed.")
}
