package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"atende/controlplane"
	"atende/controlplane/api"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// Environment variables read by ctl.
const (
	envAPI     = "ATENDE_API"
	envToken   = "ATENDE_TOKEN"
	envDataDir = "ATENDE_DATA_DIR"
)

// Defaults of the global flags.
const (
	defaultAPI     = "http://127.0.0.1:8081"
	defaultDataDir = "./.atende"
	tokenFileName  = "superadmin.token"
)

// Codes of errors that ctl itself reports (API errors carry the API's codes).
const (
	codeUnavailable = "unavailable"
	codeTimeout     = "timeout"
	codeFailed      = "failed"
	codeAborted     = "aborted"
)

// failure is an error found while running a command (exit 1), as opposed to a usage error
// (exit 2), which cobra reports before any command runs.
type failure struct{ err error }

// Error returns the wrapped error's text.
func (f failure) Error() string { return f.err.Error() }

// Unwrap returns the wrapped error.
func (f failure) Unwrap() error { return f.err }

// cliError is an error of ctl itself, printed with its code like the API's errors.
type cliError struct{ code, message string }

// Error returns the message.
func (e *cliError) Error() string { return e.message }

// app holds the global flags and the streams of one invocation.
type app struct {
	getenv         func(string) string
	in             io.Reader
	out, errOut    io.Writer
	apiURL, token  string
	jsonOut, yes   bool
	pollInterval   time.Duration
	defaultTimeout time.Duration
}

// run executes ctl with args and returns the exit code. Every error is printed to stderr as one
// line "error: <message> (<code>)"; usage errors are followed by a hint to --help.
func run(ctx context.Context, args []string, getenv func(string) string, in io.Reader, out, errOut io.Writer) int {
	a := &app{getenv: getenv, in: in, out: out, errOut: errOut, pollInterval: 100 * time.Millisecond, defaultTimeout: 60 * time.Second}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var f failure
	if errors.As(err, &f) {
		fmt.Fprintf(errOut, "error: %s (%s)\n", message(f.err), code(f.err))
		return exitFailure
	}
	fmt.Fprintf(errOut, "error: %s (usage)\nRun 'ctl --help' for usage.\n", err)
	return exitUsage
}

// message returns the human part of err.
func message(err error) string {
	var ae *controlplane.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// code returns the error code of err: the API's, ctl's own, or "unavailable" for a transport
// failure.
func code(err error) string {
	var ae *controlplane.Error
	var ce *cliError
	switch {
	case errors.As(err, &ae):
		return ae.Code
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, context.Canceled):
		return codeAborted
	default:
		return codeUnavailable
	}
}

// runE marks the errors of a command's own work as failures (exit 1).
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := f(cmd, args); err != nil {
			return failure{err}
		}
		return nil
	}
}

// group is the RunE of commands that only hold subcommands: without one it is a usage error.
func group(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return fmt.Errorf("%q needs a subcommand (one of: %s)", cmd.CommandPath(), strings.Join(subcommands(cmd), ", "))
}

func subcommands(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

func (a *app) env(name, def string) string {
	if v := strings.TrimSpace(a.getenv(name)); v != "" {
		return v
	}
	return def
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ctl",
		Short: "Atende super-admin CLI: tenants and their cells",
		Long: "ctl manages Atende tenants through the control-plane API.\n\n" +
			"The API address comes from --api or ATENDE_API (default " + defaultAPI + "); the super-admin token from\n" +
			"--token, ATENDE_TOKEN, or the file $ATENDE_DATA_DIR/superadmin.token (default ./.atende) that the\n" +
			"control plane writes in local mode.",
		SilenceUsage: true, SilenceErrors: true,
		Args: cobra.ArbitraryArgs, RunE: group,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return err })
	pf := root.PersistentFlags()
	pf.StringVar(&a.apiURL, "api", a.env(envAPI, defaultAPI), "control-plane API base URL (env "+envAPI+")")
	pf.StringVar(&a.token, "token", "", "super-admin token (env "+envToken+"; default: $"+envDataDir+"/"+tokenFileName+")")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON instead of text")
	pf.BoolVar(&a.yes, "yes", false, "do not ask for confirmation")
	root.AddCommand(a.tenantCmd(), a.cellCmd())
	root.AddCommand(a.sweepCmd())
	root.AddCommand(a.webhooksCmd())
	return root
}

// client returns the API client, resolving the token: --token, then ATENDE_TOKEN, then the token
// file of the data directory.
func (a *app) client() (*api.Client, error) {
	token := strings.TrimSpace(a.token)
	if token == "" {
		token = strings.TrimSpace(a.getenv(envToken))
	}
	if token == "" {
		path := filepath.Join(a.env(envDataDir, defaultDataDir), tokenFileName)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &cliError{codeUnavailable, fmt.Sprintf("no super-admin token: pass --token, set %s, or start the control plane so it writes %s", envToken, path)}
		}
		token = strings.TrimSpace(string(data))
	}
	return &api.Client{BaseURL: strings.TrimRight(a.apiURL, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}, nil
}

// confirm asks question on stderr and reads y/yes from stdin, unless --yes was given.
func (a *app) confirm(question string) error {
	if a.yes {
		return nil
	}
	fmt.Fprintf(a.errOut, "%s [y/N] ", question)
	var answer string
	_, _ = fmt.Fscanln(a.in, &answer)
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return &cliError{codeAborted, "not confirmed (pass --yes to skip the question)"}
}
