// Command cell serves one tenant: it reads its configuration from ATENDE_CELL_* environment
// variables (see atende/cell.Config), creates its indexes and bootstrap users, and serves HTTP and
// WebSocket until SIGINT/SIGTERM. Run as `cell -healthcheck` it instead probes the cell at
// ATENDE_CELL_ADDR (GET /healthz) and exits 0 or 1: the HEALTHCHECK of the FROM-scratch image.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/healthcheck"
	"atende/cell/mongodb"
	"atende/cell/realtime"
	"atende/cell/s3blob"
	"atende/cell/service"
	"atende/cell/web"
	"atende/cell/webhook"
)

// healthcheckFlag makes the binary probe a running cell instead of serving: `cell -healthcheck`
// (the image's HEALTHCHECK; it has no shell or curl).
const healthcheckFlag = "-healthcheck"

func main() {
	if len(os.Args) == 2 && os.Args[1] == healthcheckFlag {
		os.Exit(healthcheck.HTTP(os.Getenv(cell.EnvListenAddr), os.Stderr))
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cell:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := cell.ConfigFromEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("configuration: %s: %w", cell.EnvLogLevel, err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).
		With("tenantId", cfg.TenantID, "cellId", "cell-"+cfg.TenantID)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	store, err := mongodb.Open(ctx, cfg.MongoURI, cfg.Database, cfg.TenantID)
	if err != nil {
		return err
	}
	defer store.Close(context.Background())
	if err := store.EnsureIndexes(ctx); err != nil {
		return err
	}
	blob, err := s3blob.New(s3blob.Config{
		Endpoint: cfg.S3Endpoint, PublicEndpoint: cfg.S3PublicEndpoint, Region: cfg.S3Region,
		Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey,
	})
	if err != nil {
		return err
	}
	authority := auth.NewAuthority(cfg.TenantID, cfg.SigningKey, cfg.SigningKeyID, cfg.ControlPlaneKey, cfg.PreviousKeys...)
	svc := service.New(cfg, store, blob, realtime.NewHub(), authority, log)
	if err := svc.Bootstrap(ctx, cfg.BootstrapUsers); err != nil {
		return fmt.Errorf("bootstrap users: %w", err)
	}
	hooks, err := webhook.New(store.Database(), cfg.TenantID, service.WebhookEndpoints(svc),
		webhook.Options{AllowPrivateNetworks: cfg.WebhookAllowPrivate, Logger: log.With("component", "webhook")})
	if err != nil {
		return err
	}
	service.WireWebhooks(svc, hooks)
	flushed := make(chan struct{})
	runCtx, stopRun := context.WithCancel(context.Background())
	go func() { svc.Run(runCtx); close(flushed) }()
	hooksDone := make(chan struct{})
	go func() { hooks.Run(runCtx); close(hooksDone) }()
	defer func() { stopRun(); <-flushed; <-hooksDone }()
	srv := web.New(cfg, svc, log)
	if cfg.Tenancy == cell.TenancyCompat {
		authority.AcceptImpliedTenant(srv.ObserveImpliedTenant)
		log.Warn("compat tenancy: requests without the tenant's host and tokens without tenantId are accepted (and counted in atende_cell_compat_accepted_total)")
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Listen(cfg.ListenAddr) }()
	log.Info("cell serving", "addr", cfg.ListenAddr, "url", cfg.PublicURL)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("cell stopping")
	return srv.Shutdown(5 * time.Second)
}
