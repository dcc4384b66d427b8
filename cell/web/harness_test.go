package web_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The real embedded dependencies, started once for the package (versitygw allows one per process).
var (
	mongoURI   string
	s3Endpoint string
)

const (
	s3Access = "testroot"
	s3Secret = "testroot-secret-123"
	s3Bucket = "atende-test"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "atende-cell-test-")
	if err != nil {
		panic(err)
	}
	fdb, err := ferret.Start(dir+"/mongo", "127.0.0.1:0", nil)
	if err != nil {
		panic(err)
	}
	s3srv, err := versity.Start(dir+"/s3", "127.0.0.1:0", s3Access, s3Secret)
	if err != nil {
		panic(err)
	}
	mongoURI, s3Endpoint = fdb.URI(), s3srv.Endpoint()
	client := s3.New(s3.Options{Region: versity.Region, BaseEndpoint: aws.String(s3Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s3Access, s3Secret, "")})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(s3Bucket)}); err != nil {
		panic(err)
	}
	code := m.Run()
	s3srv.Close()
	fdb.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testCell is one running cell on a free loopback port, with its own database and prefix.
type testCell struct {
	t         *testing.T
	cfg       cell.Config
	base      string // http://127.0.0.1:port
	authority *auth.Authority
	cpKey     ed25519.PrivateKey
	srv       *web.Server
	store     *mongodb.Store
	svc       *service.Service
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCell starts a cell for a fresh tenant; mutate may adjust its configuration.
func startCell(t *testing.T, mutate func(*cell.Config)) *testCell {
	t.Helper()
	tenantID := auth.RandomID()
	_, key, _ := ed25519.GenerateKey(nil)
	cpPub, cpKey, _ := ed25519.GenerateKey(nil)
	addr := freeAddr(t)
	cfg := cell.Config{
		TenantID: tenantID, TenantKey: "acme", TenantName: "Acme", ListenAddr: addr,
		Hosts: []string{"acme.localhost"}, PublicURL: "http://acme.localhost:8080",
		MongoURI: mongoURI, Database: "t_" + tenantID,
		S3Endpoint: s3Endpoint, S3PublicEndpoint: s3Endpoint, S3Region: versity.Region, S3Bucket: s3Bucket,
		S3Prefix: "t/" + tenantID + "/", S3AccessKey: s3Access, S3SecretKey: s3Secret,
		SigningKey: key, SigningKeyID: "k1", ControlPlaneKey: cpPub,
		PresignTTL: time.Minute, MaxUploadBytes: 1 << 20, UploadContentTypes: cell.DefaultUploadContentTypes,
	}
	if mutate != nil {
		mutate(&cfg)
	}
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
	log := slog.New(slog.NewJSONHandler(testLogOut(), nil))
	svc := service.New(cfg, store, blob, realtime.NewHub(), authority, log)
	hash, _ := auth.HashPassword("admin-password-1")
	if err := svc.Bootstrap(ctx, []cell.BootstrapUser{{Email: "admin@acme.test", Roles: []string{cell.RoleTenantAdmin, cell.RoleAgent}, PasswordHash: hash}}); err != nil {
		t.Fatal(err)
	}
	hooks, err := webhook.New(store.Database(), cfg.TenantID, webhook.SettingsEndpoints(svc),
		webhook.Options{AllowPrivateNetworks: true, BackoffBase: 200 * time.Millisecond, BackoffMax: time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	webhook.Wire(svc, hooks)
	srv := web.New(cfg, svc, log)
	go srv.Listen(addr)
	runCtx, stopRun := context.WithCancel(context.Background())
	go svc.Run(runCtx)
	go hooks.Run(runCtx)
	t.Cleanup(func() {
		srv.Shutdown(2 * time.Second)
		stopRun()
		store.Close(context.Background())
	})
	tc := &testCell{t: t, cfg: cfg, base: "http://" + addr, authority: authority, cpKey: cpKey, srv: srv, store: store, svc: svc}
	for i := 0; ; i++ {
		if resp, err := http.Get(tc.base + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			t.Fatal("cell did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return tc
}

// agentToken signs an access token for a staff member directly (login is tested separately).
func (tc *testCell) token(typ, sub string, roles ...string) string {
	tc.t.Helper()
	ttl := time.Hour
	iss, err := tc.authority.Issue(auth.Grant{Type: typ, Subject: sub, Roles: roles, Name: sub, TTL: ttl})
	if err != nil {
		tc.t.Fatal(err)
	}
	return iss.Token
}

// do sends a JSON request with the tenant's Host and returns status and decoded body.
func (tc *testCell) do(method, path, token string, body any, out any) int {
	tc.t.Helper()
	return doReq(tc.t, tc.base, "acme.localhost:8080", method, path, token, body, out)
}

func doReq(t *testing.T, base, host, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

// apiError is the error body of every HTTP surface.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// newVisitorChat creates a visitor session and its chat with a first message.
func (tc *testCell) newVisitorChat(first string) (visitorToken string, chat cell.Chat) {
	tc.t.Helper()
	var vs service.VisitorSession
	if st := tc.do("POST", "/api/visitor/session", "", map[string]string{"name": "Vera"}, &vs); st != 201 {
		tc.t.Fatalf("visitor session: %d", st)
	}
	if st := tc.do("POST", "/api/chats", vs.VisitorToken, map[string]string{"message": first, "clientMsgId": fmt.Sprintf("first-%d", time.Now().UnixNano())}, &chat); st != 201 {
		tc.t.Fatalf("open chat: %d", st)
	}
	return vs.VisitorToken, chat
}

func doJSON(t *testing.T, req *http.Request, out any) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		_ = json.Unmarshal(data, out)
	}
	return resp.StatusCode
}

// testLogOut is where the test cell logs: stderr with ATENDE_TEST_LOG=1, else nowhere.
func testLogOut() io.Writer {
	if os.Getenv("ATENDE_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}
