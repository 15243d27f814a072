package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// newFlags makes a FlagSet for a command whose -h prints to stdout and whose
// errors become usage errors.
func newFlags(env *Env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("prereg "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.Usage = func() {
		fmt.Fprintf(env.Stdout, "Usage: prereg %s %s\n\n", name, usage)
		fs.SetOutput(env.Stdout)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors; a
// required flag left empty is one too, naming the first.
func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	for _, name := range required {
		if f := fs.Lookup(name); f != nil && f.Value.String() == "" {
			return usagef("--%s is required", name)
		}
	}
	return nil
}

// choice is a flag that takes one of a few values; any other is refused
// as it is parsed, so a command never checks it again.
type choice struct {
	v  string
	of []string
}

func (c *choice) String() string {
	if c == nil {
		return ""
	}
	return c.v
}

func (c *choice) Set(s string) error {
	if !slices.Contains(c.of, s) {
		return errors.New("want " + orList(c.of))
	}
	c.v = s
	return nil
}

// formatFlag adds --format: text or json, or the choices given, the first
// being the default.
func formatFlag(fs *flag.FlagSet, choices ...string) *string {
	if len(choices) == 0 {
		choices = []string{"text", "json"}
	}
	c := &choice{v: choices[0], of: choices}
	// The back-quoted choices name the flag's argument in -h.
	fs.Var(c, "format", "output: `"+strings.Join(choices, "|")+"`")
	return &c.v
}

// orList is "a, b or c".
func orList(xs []string) string {
	if len(xs) < 2 {
		return strings.Join(xs, "")
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// writeOutput writes a command's result as indented JSON, or for people.
func writeOutput(env *Env, format string, res any, text func(io.Writer)) error {
	if format == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	text(env.Stdout)
	return nil
}

// writeFile writes through a buffer to path ("-": standard output) and
// reports a failure to write, flush or close alike.
func writeFile(env *Env, path string, write func(io.Writer) error) error {
	out := env.Stdout
	var f *os.File
	if path != "-" {
		var err error
		if f, err = os.Create(path); err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if f != nil {
		return f.Close()
	}
	return nil
}
