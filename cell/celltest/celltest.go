// Package celltest runs a cell in the test's own process, wired exactly as cmd/cell wires it,
// against the real embedded dependencies (FerretDB and versitygw). It is for tests only: the cell
// packages' own tests and the control plane's tests that need a live cell (export, import).
package celltest

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/mongodb"
	"atende/cell/realtime"
	"atende/cell/s3blob"
	"atende/cell/service"
	"atende/cell/web"
	"atende/cell/webhook"
	"atende/controlplane/ferret"
	"atende/controlplane/versity"
)

// Deps are the embedded dependencies of a test package: one FerretDB and one versitygw (which
// allows one instance per process) with one bucket, in a temporary directory.
type Deps struct {
	// MongoURI is FerretDB's mongodb:// URI; S3Endpoint versitygw's http:// endpoint.
	MongoURI, S3Endpoint string
	// S3Access and S3Secret are the root credentials; Bucket the bucket created for the tests.
	S3Access, S3Secret, Bucket string
	// S3 is a client with the root credentials.
	S3    *s3.Client
	dir   string
	mongo *ferret.Server
	objs  *versity.Server
}

// StartDeps starts the dependencies with the root credentials access/secret (versitygw wants a
// secret of at least 8 characters) and creates bucket. Call it from TestMain; Close removes
// everything.
func StartDeps(name, access, secret, bucket string) (*Deps, error) {
	dir, err := os.MkdirTemp("", "atende-"+name+"-test-")
	if err != nil {
		return nil, err
	}
	d := &Deps{S3Access: access, S3Secret: secret, Bucket: bucket, dir: dir}
	if d.mongo, err = ferret.Start(dir+"/mongo", "127.0.0.1:0", nil); err != nil {
		d.Close()
		return nil, err
	}
	if d.objs, err = versity.Start(dir+"/s3", "127.0.0.1:0", access, secret); err != nil {
		d.Close()
		return nil, err
	}
	d.MongoURI, d.S3Endpoint = d.mongo.URI(), d.objs.Endpoint()
	d.S3 = s3.New(s3.Options{Region: versity.Region, BaseEndpoint: aws.String(d.S3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
	if _, err := d.S3.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		d.Close()
		return nil, fmt.Errorf("celltest: bucket: %w", err)
	}
	return d, nil
}

// Close stops the dependencies and removes their files.
func (d *Deps) Close() {
	if d.objs != nil {
		d.objs.Close()
	}
	if d.mongo != nil {
		d.mongo.Close()
	}
	os.RemoveAll(d.dir)
}

// Config returns a complete configuration of a cell for tenant id with subdomain key on these
// dependencies: a free loopback port, database "t_<id>", prefix "t/<id>/", fresh signing and
// control-plane keys (the control plane's private key is returned for signing its tokens),
// presigned URLs valid 1 minute, uploads up to 1 MiB.
func (d *Deps) Config(id, key string) (cell.Config, ed25519.PrivateKey, error) {
	_, signing, err := ed25519.GenerateKey(nil)
	if err != nil {
		return cell.Config{}, nil, err
	}
	cpPub, cpKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		return cell.Config{}, nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return cell.Config{}, nil, err
	}
	return cell.Config{
		TenantID: id, TenantKey: key, TenantName: key, ListenAddr: addr,
		Hosts: []string{key + ".localhost"}, PublicURL: "http://" + key + ".localhost:8080",
		MongoURI: d.MongoURI, Database: "t_" + id,
		S3Endpoint: d.S3Endpoint, S3PublicEndpoint: d.S3Endpoint, S3Region: versity.Region, S3Bucket: d.Bucket,
		S3Prefix: "t/" + id + "/", S3AccessKey: d.S3Access, S3SecretKey: d.S3Secret,
		SigningKey: signing, SigningKeyID: "k1", ControlPlaneKey: cpPub,
		PresignTTL: time.Minute, MaxUploadBytes: 1 << 20, UploadContentTypes: cell.DefaultUploadContentTypes,
	}, cpKey, nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Cell is a running in-process cell.
type Cell struct {
	// Cfg is the configuration it runs with; Base its http://127.0.0.1:port.
	Cfg  cell.Config
	Base string
	// Authority signs and checks its tokens; Server, Store and Service are its parts.
	Authority *auth.Authority
	Server    *web.Server
	Store     *mongodb.Store
	Service   *service.Service
	stop      func()
}

// Options tune Start.
type Options struct {
	// Bootstrap are the users created at start (cmd/cell gets them from the control plane).
	Bootstrap []cell.BootstrapUser
	// Webhooks runs the tenant-webhook dispatcher, allowing loopback receivers and retrying
	// after 200 ms (up to 1 s), for tests with a local receiver.
	Webhooks bool
	// Log receives the cell's JSON log; nil discards it.
	Log io.Writer
}

// Start runs a cell with cfg until the test ends (or Stop), and returns once its /healthz answers
// (at most about 3 s). It fails the test on any error.
func Start(t testing.TB, cfg cell.Config, opts Options) *Cell {
	t.Helper()
	ctx := context.Background()
	store, err := mongodb.Open(ctx, cfg.MongoURI, cfg.Database, cfg.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	blob, err := s3blob.New(s3blob.Config{Endpoint: cfg.S3Endpoint, PublicEndpoint: cfg.S3PublicEndpoint, Region: cfg.S3Region,
		Bucket: cfg.S3Bucket, Prefix: cfg.S3Prefix, AccessKey: cfg.S3AccessKey, SecretKey: cfg.S3SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	authority := auth.NewAuthority(cfg.TenantID, cfg.SigningKey, cfg.SigningKeyID, cfg.ControlPlaneKey, cfg.PreviousKeys...)
	out := opts.Log
	if out == nil {
		out = io.Discard
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	svc := service.New(cfg, store, blob, realtime.NewHub(), authority, log)
	if err := svc.Bootstrap(ctx, opts.Bootstrap); err != nil {
		t.Fatal(err)
	}
	var hooks *webhook.Dispatcher
	if opts.Webhooks {
		hooks, err = webhook.New(store.Database(), cfg.TenantID, service.WebhookEndpoints(svc),
			webhook.Options{AllowPrivateNetworks: true, BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		service.WireWebhooks(svc, hooks)
	}
	srv := web.New(cfg, svc, log)
	if cfg.Tenancy == cell.TenancyCompat { // as cmd/cell wires it
		authority.AcceptImpliedTenant(srv.ObserveImpliedTenant)
	}
	go srv.Listen(cfg.ListenAddr)
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { svc.Run(runCtx); close(ran) }()
	if hooks != nil {
		go hooks.Run(runCtx)
	}
	c := &Cell{Cfg: cfg, Base: "http://" + cfg.ListenAddr, Authority: authority, Server: srv, Store: store, Service: svc}
	stopped := false
	c.stop = func() {
		if stopped {
			return
		}
		stopped = true
		srv.Shutdown(2 * time.Second)
		stopRun()
		<-ran
		store.Close(context.Background())
	}
	t.Cleanup(c.stop)
	for i := 0; ; i++ {
		if resp, err := http.Get(c.Base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 300 {
			t.Fatal("celltest: the cell did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

// Stop shuts the cell down (its HTTP server, its background work, its store); later calls do
// nothing.
func (c *Cell) Stop() { c.stop() }
