// Command s3server serves the S3 API from an embedded versitygw (atende/controlplane/versity,
// posix backend) with its objects, metadata and accounts in a data directory. It is the
// S3-compatible server of docker-compose.local.yml, where no MinIO image is at hand: the image
// atende/s3 (deploy/s3.Dockerfile, built FROM scratch by `make images-local`) runs it in place of
// minio/minio. The control plane talks to it with the root credentials, as it would to MinIO.
//
// Configuration (read once at start; a flag wins over its variable; secrets only from the
// environment):
//
//	-addr        ATENDE_S3_ADDR        listen address, default 0.0.0.0:9000 (MinIO's port)
//	-data-dir    ATENDE_DATA_DIR       objects, metadata and accounts, default /data
//	             ATENDE_S3_ACCESS_KEY  root access key (required)
//	             ATENDE_S3_SECRET_KEY  root secret key (required)
//
// `s3server -healthcheck` probes a running server instead of serving: it requests the gateway's
// /healthz on the listen address (an unspecified host becomes the loopback) and exits 0 on a 200,
// 1 otherwise, as Docker's HEALTHCHECK expects (the image has no shell or curl).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"atende/cell/healthcheck"
	"atende/controlplane/versity"
)

// Environment variables of the server.
const (
	envAddr      = "ATENDE_S3_ADDR"
	envDataDir   = "ATENDE_DATA_DIR"
	envAccessKey = "ATENDE_S3_ACCESS_KEY"
	envSecretKey = "ATENDE_S3_SECRET_KEY"
)

// config is the server's configuration.
type config struct {
	Addr, DataDir, AccessKey, SecretKey string
	Healthcheck                         bool
}

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "s3server: invalid configuration: %v\n", err)
		os.Exit(2)
	}
	if cfg.Healthcheck {
		os.Exit(healthcheck.HTTP(cfg.Addr, os.Stdout))
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := versity.Start(cfg.DataDir, cfg.Addr, cfg.AccessKey, cfg.SecretKey)
	if err != nil {
		log.Error("s3server failed", "err", err.Error())
		os.Exit(1)
	}
	log.Info("s3server ready", "addr", cfg.Addr, "dataDir", cfg.DataDir, "region", versity.Region)
	<-ctx.Done()
	srv.Close()
}

// loadConfig reads flags (args) over environment variables (getenv) over defaults, and the root
// credentials from getenv only. The error names every invalid setting. With -healthcheck only
// the address matters.
func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("s3server", flag.ContinueOnError)
	fs.StringVar(&c.Addr, "addr", env(envAddr, "0.0.0.0:9000"), "listen address ("+envAddr+")")
	fs.StringVar(&c.DataDir, "data-dir", env(envDataDir, "/data"), "directory of objects, metadata and accounts ("+envDataDir+")")
	fs.BoolVar(&c.Healthcheck, "healthcheck", false, "probe the running server (/healthz) and exit 0 if it answers 200")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.AccessKey, c.SecretKey = getenv(envAccessKey), getenv(envSecretKey)
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("%s: %q is not host:port", envAddr, c.Addr))
	}
	if c.Healthcheck {
		return c, errors.Join(errs...)
	}
	if c.DataDir == "" {
		errs = append(errs, fmt.Errorf("%s must not be empty", envDataDir))
	}
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, fmt.Errorf("%s and %s are required", envAccessKey, envSecretKey))
	}
	return c, errors.Join(errs...)
}
