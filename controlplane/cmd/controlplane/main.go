// Command controlplane runs Atende's control plane. In local mode (the default) it is the whole
// platform in one process tree: an embedded FerretDB (MongoDB protocol) and versitygw (S3), the
// tenant registry, the supervisor with the process driver (one cell process per tenant; with
// ATENDE_DRIVER=docker one container per tenant, see driver.go), the
// super-admin API, and the dev edge router that sends http://<key>.<domain>:<port> to the
// tenant's cell. Configuration comes from ATENDE_* environment variables and flags (see
// config.go). It prints "atende: ready" on stdout once everything serves, and stops everything on
// SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/edge"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/platformhook"
	"atende/controlplane/process"
	"atende/controlplane/s3bucket"
	"atende/controlplane/supervisor"
	"atende/controlplane/transfer"
	"atende/controlplane/versity"
	"atende/templates"
	"atende/traefik"
)

// superAdminTokenTTL is the lifetime of the local super-admin token written at every start.
const superAdminTokenTTL = 30 * 24 * time.Hour

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "controlplane: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, os.Stdout); err != nil {
		log.Error("control plane failed", "err", err.Error())
		os.Exit(1)
	}
}

// run starts everything, prints the banner and "atende: ready" to out, waits for ctx and shuts
// down in order: supervisor, cells, servers, registry, object store, database.
func run(ctx context.Context, cfg config, log *slog.Logger, out io.Writer) error {
	var closers []func() // run in reverse order on return
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(cfg.DataDir, keyFile))
	if err != nil {
		return err
	}

	// Cell driver, when it is docker: it decides where embedded services listen (cells in
	// containers cannot reach this host's loopback).
	var driver cellDriver
	if cfg.Driver == driverDocker {
		dd, closeDocker, err := openDockerDriver(ctx, &cfg, log.With("component", "docker"))
		if err != nil {
			return err
		}
		closers = append(closers, closeDocker)
		driver = dd
	}

	// Database server.
	mongoURI := cfg.MongoURI
	if mongoURI == "" {
		ferretLevel := max(cfg.LogLevel, slog.LevelError) // FerretDB warns about every unknown command
		srv, err := ferret.Start(filepath.Join(cfg.DataDir, "mongo"), cfg.MongoAddr,
			slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: ferretLevel})).With("component", "ferretdb"))
		if err != nil {
			return err
		}
		closers = append(closers, srv.Close)
		mongoURI = srv.URI()
		log.Info("embedded FerretDB started", "uri", mongoURI)
	}

	// Object store.
	s3Endpoint, s3Access, s3Secret := cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey
	var objectIAM supervisor.ObjectStoreIAM // per-tenant credentials; only for the embedded gateway
	var versitySrv *versity.Server          // the embedded gateway, if any
	if s3Endpoint == "" {
		creds, err := loadOrCreateS3Credentials(filepath.Join(cfg.DataDir, s3CredentialsFile))
		if err != nil {
			return err
		}
		srv, err := versity.Start(filepath.Join(cfg.DataDir, "s3"), cfg.S3Addr, creds.AccessKey, creds.SecretKey)
		if err != nil {
			return err
		}
		closers = append(closers, srv.Close)
		s3Endpoint, s3Access, s3Secret = srv.Endpoint(), creds.AccessKey, creds.SecretKey
		objectIAM = srv.TenantAccess(cfg.S3Bucket)
		versitySrv = srv
		log.Info("embedded S3 started", "endpoint", s3Endpoint)
	}

	// Listeners first: the edge's concrete port is part of tenant URLs and CORS origins.
	edgeLn, err := net.Listen("tcp", cfg.EdgeAddr)
	if err != nil {
		return fmt.Errorf("edge listener: %w", err)
	}
	closers = append(closers, func() { edgeLn.Close() })
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	closers = append(closers, func() { apiLn.Close() })
	edgePort := edgeLn.Addr().(*net.TCPAddr).Port
	publicPort := cfg.PublicURLPort
	if publicPort == 0 {
		publicPort = edgePort
	}
	edgeURL := "http://" + hostPort(cfg.Domain, publicPort)
	// Browsers reach the object store through the edge (or Traefik), which adds nosniff: by
	// default at the bare domain under the bucket's path, which every HTTP client resolves.
	s3Public := cfg.S3PublicEndpoint
	if s3Public == "" {
		s3Public = edgeURL
	}
	var store3 edge.ObjectStore
	if host, bucket, ok := objectStoreRoute(s3Public, cfg.Domain, cfg.S3Bucket); ok {
		store3 = edge.ObjectStore{Backend: s3Endpoint, Host: host, Bucket: bucket}
	} else {
		log.Warn("the public S3 endpoint is not on the platform's domain: attachment downloads lack nosniff unless its server adds it", "endpoint", s3Public)
	}

	s3c := s3bucket.NewClient(s3Endpoint, cfg.S3Region, s3Access, s3Secret)
	if err := s3bucket.EnsureBucket(ctx, s3c, cfg.S3Bucket); err != nil {
		return err
	}
	if err := s3bucket.PutCORS(ctx, s3c, cfg.S3Bucket, corsOrigins(cfg.Domain, publicPort)); err != nil {
		log.Warn("bucket CORS not set: browsers on tenant hosts cannot upload attachments", "err", err.Error())
	}

	store, err := mongodb.Open(ctx, mongoURI, mongodb.DefaultDatabase)
	if err != nil {
		return err
	}
	closers = append(closers, func() { _ = store.Close(context.Background()) })

	platform := supervisor.Platform{
		Domain: cfg.Domain, PublicScheme: "http", PublicPort: publicPort, MongoURI: mongoURI,
		S3Endpoint: s3Endpoint, S3PublicEndpoint: s3Public, S3Region: cfg.S3Region, S3Bucket: cfg.S3Bucket,
		S3AccessKey: s3Access, S3SecretKey: s3Secret, ControlPlaneKey: key.Public().(ed25519.PublicKey),
		PresignTTL: cfg.CellPresignTTL, CellLogLevel: cfg.LogLevelName, TrustedProxies: cfg.CellTrustedProxies,
	}
	pageData := templates.Data{Title: "Atende", Domain: cfg.Domain, EdgeURL: edgeURL}
	notFound := templates.PlatformHandler("notfound.html", http.StatusNotFound, "not_found", "tenant not found", pageData)
	paused := templates.PlatformHandler("paused.html", http.StatusGone, "suspended", "this tenant is suspended", pageData)
	landing := templates.PlatformHandler("landing.html", http.StatusOK, "not_found", "no tenant on this host", pageData)
	router := edge.New(edge.Options{Domain: cfg.Domain, Landing: landing,
		NotFound: notFound, Paused: paused, Logger: log.With("component", "edge"), ObjectStore: store3})

	// Traefik's fallback and paused services point at the edge router, which answers the
	// landing, not-found and paused pages by Host (traefik.Build accepts base URLs only).
	edgeBase := "http://" + edgeLn.Addr().String()
	if cfg.EdgeInternalURL != "" { // Traefik in a container: the edge's name on its network
		edgeBase = cfg.EdgeInternalURL
	}
	traefikOpts := traefik.Options{EntryPoints: []string{"web"}, FallbackURL: edgeBase, PausedURL: edgeBase}
	if store3.Backend != "" {
		traefikOpts.ObjectStoreURL, traefikOpts.ObjectStoreHost, traefikOpts.ObjectStoreBucket = store3.Backend, store3.Host, store3.Bucket
	}
	traefikFile := filepath.Join(cfg.DataDir, "traefik", "dynamic.yml")
	publish := func(routes []traefik.Route) error {
		router.SetRoutes(routes)
		data, err := traefik.Build(routes, traefikOpts)
		if err != nil {
			return err
		}
		return traefik.WriteFile(traefikFile, data)
	}

	var sup *supervisor.Supervisor
	if driver == nil {
		pd, err := process.New(process.Options{
			Binary: cfg.CellBin, Dir: filepath.Join(cfg.DataDir, "cells"), Logger: log.With("component", "process"),
			OnAddressChange: func(tenantID, addr string) { sup.CellAddressChanged(tenantID, addr) },
		})
		if err != nil {
			return err
		}
		driver = pd
	}
	sup, err = supervisor.New(supervisor.Options{
		Store: store, Driver: driver, Platform: platform, OnRoutes: publish, DeleteGrace: cfg.DeleteGrace,
		DataRemovers: []controlplane.DataRemover{
			mongodb.TenantDatabases{Client: store.Client()},
			s3bucket.TenantPrefixes{Client: s3c, Bucket: cfg.S3Bucket},
		},
		ObjectStoreIAM: objectIAM,
		// Shared tier: a database user per tenant where the server has users (MongoDB), else
		// recorded as unsupported (FerretDB). Dedicated tier: docker driver only (tiers.go).
		DatabaseUsers:   mongodb.TenantUsers{Client: store.Client()},
		DatabaseServers: dedicatedServers(driver),
		TenantBuckets:   dedicatedBuckets(driver, versitySrv, s3c),
		Logger:          log.With("component", "supervisor"),
	})
	if err != nil {
		return err
	}

	// Tenant export and import (ctl tenant export|import): temporary files under the data dir,
	// which is private (0700), as the files hold secrets.
	transfers, err := transfer.New(transfer.Options{
		Tenants: sup, MongoURI: mongoURI, S3: s3c, Bucket: cfg.S3Bucket, Events: transfer.StoreEvents{Store: store},
		TempDir: filepath.Join(cfg.DataDir, "tmp"), Logger: log.With("component", "transfer"),
	})
	if err != nil {
		return err
	}
	closers = append(closers, func() { _ = transfers.Close(context.Background()) })

	// Lifecycle webhooks to the platform URL, when configured; the delivery log stays readable
	// through the API either way. Stopped before the registry is closed.
	webhooks := platformhook.Log{Store: store, URL: cfg.PlatformWebhookURL}
	if cfg.PlatformWebhookURL != "" {
		deliverer, err := platformhook.New(platformhook.Options{URL: cfg.PlatformWebhookURL, Secret: cfg.PlatformWebhookSecret,
			Store: store, Logger: log.With("component", "platformhook")})
		if err != nil {
			return err
		}
		hooksCtx, stopHooks := context.WithCancel(context.WithoutCancel(ctx))
		hooksDone := make(chan struct{})
		go func() { defer close(hooksDone); _ = deliverer.Run(hooksCtx) }()
		closers = append(closers, func() { stopHooks(); <-hooksDone })
	}

	// Servers.
	app := api.New(api.Options{Service: sup, TokenKey: key.Public().(ed25519.PublicKey), NotFound: notFound, Paused: paused,
		Logger: log.With("component", "api"), Transfer: transfers, Webhooks: webhooks})
	go func() {
		if err := app.Listener(apiLn); err != nil {
			log.Error("API server", "err", err.Error())
		}
	}()
	closers = append(closers, func() { _ = app.ShutdownWithTimeout(5 * time.Second) })
	edgeSrv := &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.With("component", "edge").Handler(), slog.LevelWarn)}
	go func() {
		if err := edgeSrv.Serve(edgeLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("edge server", "err", err.Error())
		}
	}()
	closers = append(closers, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = edgeSrv.Shutdown(sctx)
	})

	// Supervisor, then cells: stopped before the servers above close.
	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	supDone := make(chan struct{})
	go func() { defer close(supDone); _ = sup.Run(supCtx) }()
	closers = append(closers, func() {
		stopSup()
		<-supDone
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		driver.StopAll(sctx)
		log.Info("cells stopped")
	})

	token, err := api.IssueSuperAdminToken(key, "local-super-admin", cell.ControlPlaneAudience, superAdminTokenTTL)
	if err != nil {
		return err
	}
	tokenPath := filepath.Join(cfg.DataDir, tokenFile)
	if err := writePrivate(tokenPath, []byte(token+"\n")); err != nil {
		return fmt.Errorf("write token: %w", err)
	}

	var dev *devCredentials
	if cfg.SeedDev {
		if dev, err = seedDev(ctx, sup, cfg.DataDir, log); err != nil {
			return fmt.Errorf("seed dev tenant: %w", err)
		}
	}
	apiURL := "http://" + apiLn.Addr().String()
	if err := writeJSON(filepath.Join(cfg.DataDir, runtimeFile), runtimeInfo{
		API: apiLn.Addr().String(), Edge: edgeLn.Addr().String(), Mongo: mongoURI, S3: s3Endpoint,
	}); err != nil {
		return err
	}
	printBanner(out, edgeURL, apiURL, tokenPath, dev, filepath.Join(cfg.DataDir, devCredentialsFile))
	fmt.Fprintln(out, "atende: ready")
	log.Info("control plane ready", "api", apiURL, "edge", edgeURL)

	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

// seedDev creates the dev tenant (tenant-admin admin@dev.localhost, agent agent@dev.localhost)
// unless a tenant with key "dev" exists, writes the generated credentials to
// dev-credentials.json, and waits (at most 20 s) until the tenant is live. For an existing dev
// tenant it returns the credentials file's content, if any.
func seedDev(ctx context.Context, sup *supervisor.Supervisor, dataDir string, log *slog.Logger) (*devCredentials, error) {
	path := filepath.Join(dataDir, devCredentialsFile)
	t, err := sup.Tenant(ctx, "dev")
	switch controlplane.ErrorCode(err) {
	case "":
		var creds devCredentials
		if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &creds) == nil {
			return &creds, nil
		}
		return nil, nil
	case controlplane.ENotFound:
	default:
		return nil, err
	}
	created, err := sup.CreateTenant(ctx, controlplane.NewTenant{
		Key: "dev", Name: "Dev", Admin: controlplane.NewUser{Email: "admin@dev.localhost", Name: "Dev Admin"},
		Agents: []controlplane.NewUser{{Email: "agent@dev.localhost", Name: "Dev Agent"}},
	})
	if err != nil {
		return nil, err
	}
	t = created.Tenant
	creds := &devCredentials{Tenant: "dev", URL: t.URL,
		Admin: credentials{created.Admin.Email, created.Admin.Password},
		Agent: credentials{created.Agents[0].Email, created.Agents[0].Password}}
	if err := writeJSON(path, creds); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t, err = sup.Tenant(ctx, "dev"); err == nil && (t.State == controlplane.StateLive || t.State == controlplane.StateCreationFailed) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if t == nil || t.State != controlplane.StateLive {
		log.Warn("dev tenant is not live yet; see `bin/ctl tenant get dev` and `bin/ctl cell logs dev`")
	}
	return creds, nil
}

// printBanner prints how to use the running platform.
func printBanner(out io.Writer, edgeURL, apiURL, tokenPath string, dev *devCredentials, devPath string) {
	fmt.Fprintf(out, "\nAtende is running.\n")
	fmt.Fprintf(out, "  edge (tenants)    %s  → tenants at %s\n", edgeURL, tenantPattern(edgeURL))
	fmt.Fprintf(out, "  control-plane API %s  (super-admin token in %s)\n", apiURL, tokenPath)
	if dev != nil {
		fmt.Fprintf(out, "  dev console       %s/console\n", dev.URL)
		fmt.Fprintf(out, "  dev widget demo   %s/widget-demo\n", dev.URL)
		fmt.Fprintf(out, "  dev admin         %s / %s\n", dev.Admin.Email, dev.Admin.Password)
		fmt.Fprintf(out, "  dev agent         %s / %s\n", dev.Agent.Email, dev.Agent.Password)
		fmt.Fprintf(out, "  (also in %s)\n", devPath)
	}
	fmt.Fprintf(out, "  new tenant        %sbin/ctl tenant create acme --name \"Acme\" --admin-email admin@acme.test\n", ctlEnv(apiURL, tokenPath))
	fmt.Fprintf(out, "Press Ctrl-C to stop.\n\n")
}

// ctlEnv returns the environment ctl needs in front of a command when this control plane does
// not run at ctl's defaults (API http://127.0.0.1:8081, token under ./.atende), e.g.
// "ATENDE_API=http://127.0.0.1:18081 ".
func ctlEnv(apiURL, tokenPath string) string {
	var env string
	if apiURL != "http://127.0.0.1:8081" {
		env += "ATENDE_API=" + apiURL + " "
	}
	dataDir, _ := filepath.Abs(filepath.Dir(tokenPath))
	if def, _ := filepath.Abs(".atende"); dataDir != def {
		env += "ATENDE_DATA_DIR=" + dataDir + " "
	}
	return env
}

// tenantPattern turns "http://localhost:8080" into "http://<key>.localhost:8080".
func tenantPattern(edgeURL string) string {
	const scheme = "http://"
	return scheme + "<key>." + edgeURL[len(scheme):]
}

// hostPort joins host and port, leaving out port 80.
func hostPort(host string, port int) string {
	if port == 80 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// objectStoreRoute decides how the edge and Traefik serve the public S3 endpoint publicURL: on
// the bare domain only the bucket's path (bucket returned), on a subdomain of domain the whole
// host (bucket empty). ok is false for an endpoint elsewhere (or unparsable), which neither
// serves.
func objectStoreRoute(publicURL, domain, s3Bucket string) (host, bucket string, ok bool) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
		return "", "", false
	}
	host = strings.ToLower(u.Hostname())
	switch {
	case host == domain:
		return host, s3Bucket, true
	case strings.HasSuffix(host, "."+domain) && traefik.CheckHost(host) == nil:
		return host, "", true
	}
	return "", "", false
}

// corsOrigins returns the origin patterns of tenant hosts allowed to use presigned URLs from a
// browser: http and https on *.<domain> with the public port (left out when it is the scheme's
// default).
func corsOrigins(domain string, port int) []string {
	var out []string
	for _, scheme := range []string{"http", "https"} {
		host := "*." + domain
		if !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
			host += ":" + strconv.Itoa(port)
		}
		out = append(out, scheme+"://"+host)
	}
	return out
}
