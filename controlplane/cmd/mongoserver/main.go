// Command mongoserver serves the MongoDB wire protocol from an embedded FerretDB v1
// (atende/controlplane/ferret) with its SQLite files in a data directory. It is the database
// server of a dedicated tenant where no MongoDB image is at hand: the image atende/mongo
// (deploy/mongo.Dockerfile, built FROM scratch by `make images`) runs it, and the docker driver
// starts one container of it per dedicated tenant. docker-compose.yml uses MongoDB itself.
//
// Configuration (read once at start; a flag wins over its variable):
//
//	-addr        ATENDE_MONGO_ADDR  listen address, default 0.0.0.0:27017
//	-data-dir    ATENDE_DATA_DIR    SQLite files, default /data (a volume in the image)
//	-log-level   ATENDE_LOG_LEVEL   debug, info, warn or error (default error: FerretDB warns
//	                                about every command it does not know)
//
// `mongoserver -healthcheck` probes a running server instead of serving: it sends `ping` to the
// listen address (an unspecified host becomes the loopback) and exits 0 when the answer is ok,
// 1 otherwise, as Docker's HEALTHCHECK expects (the image has no shell).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"atende/cell/healthcheck"
	"atende/controlplane/ferret"
)

// Environment variables of the server.
const (
	envAddr     = "ATENDE_MONGO_ADDR"
	envDataDir  = "ATENDE_DATA_DIR"
	envLogLevel = "ATENDE_LOG_LEVEL"
)

// config is the server's configuration.
type config struct {
	Addr, DataDir string
	LogLevel      slog.Level
	Healthcheck   bool
}

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mongoserver: invalid configuration: %v\n", err)
		os.Exit(2)
	}
	if cfg.Healthcheck {
		os.Exit(probe(cfg.Addr, os.Stdout))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := ferret.Start(cfg.DataDir, cfg.Addr, log.With("component", "ferretdb"))
	if err != nil {
		log.Error("mongoserver failed", "err", err.Error())
		os.Exit(1)
	}
	log.Warn("mongoserver ready", "addr", cfg.Addr, "dataDir", cfg.DataDir) // warn: visible at the default level
	<-ctx.Done()
	srv.Close()
}

// loadConfig reads flags (args) over environment variables (getenv) over defaults.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	var c config
	var level string
	fs := flag.NewFlagSet("mongoserver", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", env(envAddr, "0.0.0.0:27017"), "listen address ("+envAddr+")")
	fs.StringVar(&c.DataDir, "data-dir", env(envDataDir, "/data"), "directory of the SQLite files ("+envDataDir+")")
	fs.StringVar(&level, "log-level", env(envLogLevel, "error"), "debug, info, warn or error ("+envLogLevel+")")
	fs.BoolVar(&c.Healthcheck, "healthcheck", false, "probe the running server (ping) and exit 0 if it answers")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("%s: %q is not host:port", envAddr, c.Addr))
	}
	if c.DataDir == "" {
		errs = append(errs, fmt.Errorf("%s must not be empty", envDataDir))
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("%s: %q must be debug, info, warn or error", envLogLevel, level))
	}
	return c, errors.Join(errs...)
}

// probe sends `ping` to the server listening on addr (an unspecified or empty host is the
// loopback) and returns 0 when it answers ok, 1 otherwise, with the reason written to out
// (Docker keeps it in the container's health log).
func probe(addr string, out io.Writer) int {
	target, err := healthcheck.Target(addr)
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthcheck.Timeout)
	defer cancel()
	uri := "mongodb://" + target + "/?directConnection=true"
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(healthcheck.Timeout))
	if err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	defer client.Disconnect(context.Background())
	if err := client.Ping(ctx, nil); err != nil {
		fmt.Fprintln(out, "healthcheck:", err)
		return 1
	}
	return 0
}
