package gateway

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  sluice [serve] [-config FILE]   run the gateway (default config.yaml)
  sluice validate [-config FILE]  check a config; exit 1 and print each error
  sluice keys ... | counters ...  talk to a running gateway's admin API
` + clientUsage

// Main is the sluice command: it parses args (without the program name),
// runs, and returns the exit code. SIGHUP reloads the config; SIGINT and
// SIGTERM drain in-flight requests and return 0.
func Main(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && (args[0] == "keys" || args[0] == "counters") {
		return runClient(args[0], args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "serve" || args[0] == "validate") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("sluice "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	path := fs.String("config", "config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n%s", fs.Arg(0), usage)
		return 2
	}
	if cmd == "validate" {
		if _, err := Load(*path, nil, nil); err != nil {
			printErrors(stderr, *path, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: valid\n", *path)
		return 0
	}

	g, err := New(Options{ConfigPath: *path, LogOutput: stderr, Watch: true})
	if err != nil {
		printErrors(stderr, *path, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = g.Reload()
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "sluice: %v\n", err)
		return 1
	}
	return 0
}

func printErrors(w io.Writer, path string, err error) {
	var errs Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintf(w, "%s: %v\n", path, e)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}
