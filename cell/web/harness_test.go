package web_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/celltest"
	"atende/cell/mongodb"
	"atende/cell/service"
	"atende/cell/web"
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
	deps, err := celltest.StartDeps("cell", s3Access, s3Secret, s3Bucket)
	if err != nil {
		panic(err)
	}
	mongoURI, s3Endpoint = deps.MongoURI, deps.S3Endpoint
	code := m.Run()
	deps.Close()
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
	addr, err := celltest.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startCell starts a cell for a fresh tenant ("acme", bootstrap tenant-admin admin@acme.test with
// password admin-password-1, tenant webhooks on); mutate may adjust its configuration.
func startCell(t *testing.T, mutate func(*cell.Config)) *testCell {
	t.Helper()
	deps := &celltest.Deps{MongoURI: mongoURI, S3Endpoint: s3Endpoint, S3Access: s3Access, S3Secret: s3Secret, Bucket: s3Bucket}
	cfg, cpKey, err := deps.Config(auth.RandomID(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	cfg.TenantName = "Acme"
	if mutate != nil {
		mutate(&cfg)
	}
	hash, _ := auth.HashPassword("admin-password-1")
	c := celltest.Start(t, cfg, celltest.Options{Webhooks: true, Log: testLogOut(),
		Bootstrap: []cell.BootstrapUser{{Email: "admin@acme.test", Roles: []string{cell.RoleTenantAdmin, cell.RoleAgent}, PasswordHash: hash}}})
	return &testCell{t: t, cfg: c.Cfg, base: c.Base, authority: c.Authority, cpKey: cpKey, srv: c.Server, store: c.Store, svc: c.Service}
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
