// Package cli is the sluice command line: serve, validate, healthcheck,
// version and the admin client (keys, counters). cmd/sluice only hands it
// the arguments and a context that ends on SIGINT or SIGTERM, so tests
// start the real program in process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/gateway"
	"github.com/sluice-gateway/sluice/internal/version"
)

const usage = `usage: sluice COMMAND [flags]

  sluice [serve] [-config FILE]     run the gateway (default config.yaml);
                                    SIGHUP reloads, SIGINT/SIGTERM drain
  sluice validate [-config FILE]    check a config: print every error with its
                                    line (or environment variable); exit 1 if any
  sluice healthcheck [-config FILE] [-admin ADDR] [-timeout 2s]
                                    exit 0 when the admin listener's /healthz
                                    answers (for images without curl)
  sluice version                    version, VCS revision and Go version
  sluice keys ... | counters ...    talk to a running gateway's admin API
  sluice help [COMMAND]             this text, or a command's

`

// Program is the sluice command line. The zero value writes nowhere and
// reads the process environment; it is not safe for concurrent use.
type Program struct {
	Stdout, Stderr io.Writer
	// Environ holds the environment (KEY=value); nil means os.Environ.
	Environ []string
	// TokenDir is where a gateway writes a generated admin token and where
	// the admin client looks for it; empty means gateway.TokenFile's
	// default.
	TokenDir string
}

// Run runs the command in args (without the program name) and returns the
// exit code: 0 success, 1 failure, 2 misuse. serve runs until ctx ends,
// then drains.
func (p *Program) Run(ctx context.Context, args []string) int {
	if p.Stdout == nil {
		p.Stdout = io.Discard
	}
	if p.Stderr == nil {
		p.Stderr = io.Discard
	}
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "validate":
		return p.serve(ctx, cmd, args)
	case "healthcheck":
		return p.healthcheck(args)
	case "version":
		if len(args) > 0 && isHelp(args[0]) {
			fmt.Fprint(p.Stdout, "usage: sluice version\n")
			return 0
		}
		fmt.Fprintln(p.Stdout, version.Get())
		return 0
	case "keys", "counters":
		return p.client(cmd, args)
	case "help":
		if len(args) > 0 {
			return p.Run(ctx, []string{args[0], "-h"})
		}
		fmt.Fprint(p.Stdout, usage+clientUsage)
		return 0
	}
	fmt.Fprintf(p.Stderr, "sluice: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// newFlags is a flag set whose -h prints usage once, to stdout.
func (p *Program) newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(p.Stderr)
	fs.Usage = func() {} // parse reports; -h prints the usage itself
	return fs
}

// parse parses args into fs. It returns -1 to go on, or an exit code: 0
// after printing help for -h, 2 after a bad flag.
func (p *Program) parse(fs *flag.FlagSet, args []string, help string) int {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(p.Stdout, help)
		return 0
	case err != nil:
		fmt.Fprintf(p.Stderr, "%s\n", help)
		return 2
	}
	return -1
}

func (p *Program) environ() []string {
	if p.Environ != nil {
		return p.Environ
	}
	return os.Environ()
}

func (p *Program) serve(ctx context.Context, cmd string, args []string) int {
	fs := p.newFlags("sluice " + cmd)
	path := fs.String("config", "config.yaml", "config file")
	if code := p.parse(fs, args, usage); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(p.Stderr, "sluice %s: unexpected argument %q\n\n%s", cmd, fs.Arg(0), usage)
		return 2
	}
	if cmd == "validate" {
		// Warnings (environment variables that name no field) as serve
		// would log them, without timestamps.
		log := slog.New(slog.NewTextHandler(p.Stderr, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
		if _, err := gateway.Load(*path, p.environ(), log); err != nil {
			printErrors(p.Stderr, err)
			return 1
		}
		fmt.Fprintf(p.Stdout, "%s: valid\n", *path)
		return 0
	}

	g, err := gateway.New(gateway.Options{ConfigPath: *path, Environ: p.environ(), LogOutput: p.Stderr, Watch: true, TokenDir: p.TokenDir})
	if err != nil {
		printErrors(p.Stderr, err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-hup:
				_ = g.Reload()
			case <-done:
				return
			}
		}
	}()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintf(p.Stderr, "sluice: %v\n", err)
		return 1
	}
	return 0
}

// printErrors prints each config error on its own line.
func printErrors(w io.Writer, err error) {
	var errs gateway.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e)
		}
		return
	}
	fmt.Fprintf(w, "sluice: %v\n", err)
}

const healthUsage = `usage: sluice healthcheck [-config FILE] [-admin ADDR] [-timeout 2s]

Exits 0 when GET /healthz on the admin listener answers 200, else 1. The
address is -admin, else admin.listen of the config (with its SLUICE_
overrides); a wildcard host is asked on loopback.
`

var wildcardHost = regexp.MustCompile(`^(|0\.0\.0\.0|::|\[::\])$`)

func (p *Program) healthcheck(args []string) int {
	fs := p.newFlags("sluice healthcheck")
	path := fs.String("config", "config.yaml", "config file")
	addr := fs.String("admin", "", "admin listener address (default: from the config)")
	timeout := fs.Duration("timeout", 2*time.Second, "give up after")
	if code := p.parse(fs, args, healthUsage); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(p.Stderr, "sluice healthcheck: unexpected argument %q\n\n%s", fs.Arg(0), healthUsage)
		return 2
	}
	if *addr == "" {
		cfg, err := gateway.Load(*path, p.environ(), nil)
		if err != nil {
			printErrors(p.Stderr, err)
			return 1
		}
		*addr = cfg.Admin.Listen
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(*addr, "http://"))
	if err != nil {
		fmt.Fprintf(p.Stderr, "sluice healthcheck: %v\n", err)
		return 2
	}
	if wildcardHost.MatchString(host) {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: *timeout}
	resp, err := client.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		fmt.Fprintf(p.Stderr, "sluice healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(p.Stderr, "sluice healthcheck: /healthz answered %d\n", resp.StatusCode)
		return 1
	}
	return 0
}
