package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
)

// tenants is an in-memory controlplane.TenantService behind the real API handlers: a created
// tenant turns live on its second read, key "broken" turns creation-failed.
type tenants struct {
	mu    sync.Mutex
	byKey map[string]*controlplane.Tenant
	reads map[string]int
}

func (s *tenants) CreateTenant(ctx context.Context, req controlplane.NewTenant) (*controlplane.CreatedTenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := controlplane.ValidateKey(req.Key); err != nil {
		return nil, err
	}
	if _, ok := s.byKey[req.Key]; ok {
		return nil, controlplane.Errorf(controlplane.EConflict, "the key %q is already taken by another tenant", req.Key)
	}
	t := &controlplane.Tenant{ID: "id-" + req.Key, Key: req.Key, Name: req.Name, State: controlplane.StateCreationRequested,
		URL: "http://" + req.Key + ".localhost:8080", Plan: "free", CreatedAt: time.Now().UTC()}
	s.byKey[req.Key] = t
	pw := req.Admin.Password
	if pw == "" {
		pw = "generated-password-1"
	}
	cp := *t
	return &controlplane.CreatedTenant{Tenant: &cp, Admin: controlplane.Credentials{Email: req.Admin.Email, Password: pw}}, nil
}

func (s *tenants) Tenants(ctx context.Context, f controlplane.TenantFilter) ([]*controlplane.Tenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*controlplane.Tenant
	for _, t := range s.byKey {
		cp := *t
		out = append(out, &cp)
	}
	return out, nil
}

func (s *tenants) Tenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.byKey {
		if t.ID == idOrKey || t.Key == idOrKey {
			s.reads[t.Key]++
			if t.Cell.Generation < t.Generation && s.reads[t.Key] > 2 {
				t.Cell.Generation = t.Generation
			}
			if s.reads[t.Key] >= 2 && t.State == controlplane.StateCreationRequested {
				t.State = controlplane.StateLive
				if t.Key == "broken" {
					t.State, t.StateReason = controlplane.StateCreationFailed, "cell did not answer /healthz"
				}
			}
			cp := *t
			return &cp, nil
		}
	}
	return nil, controlplane.Errorf(controlplane.ENotFound, "no tenant with id or key %q", idOrKey)
}

func (s *tenants) SuspendTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return nil, controlplane.Errorf(controlplane.EConflict, "a tenant cannot go from deleted to suspend-requested")
}
func (s *tenants) ResumeTenant(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	return s.Tenant(ctx, idOrKey)
}
func (s *tenants) DeleteTenant(ctx context.Context, idOrKey string, now bool) (*controlplane.Tenant, error) {
	return s.Tenant(ctx, idOrKey)
}
func (s *tenants) RotateKeys(ctx context.Context, idOrKey string) (*controlplane.Tenant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.byKey {
		if t.ID == idOrKey || t.Key == idOrKey {
			// The cell catches up with the new generation on the next read (see Tenant).
			t.Generation++
			t.SigningKeyID = fmt.Sprintf("k-%d", t.Generation+1)
			cp := *t
			return &cp, nil
		}
	}
	return nil, controlplane.Errorf(controlplane.ENotFound, "no tenant with id or key %q", idOrKey)
}
func (s *tenants) TenantEvents(ctx context.Context, idOrKey string) ([]controlplane.Event, error) {
	return nil, nil
}
func (s *tenants) CellStatus(ctx context.Context, idOrKey string) (controlplane.CellStatus, error) {
	return controlplane.CellStatus{State: controlplane.CellRunning, Healthy: true}, nil
}
func (s *tenants) CellLogs(ctx context.Context, idOrKey string, lines int) ([]byte, error) {
	return []byte("line 1\nline 2\n"), nil
}

// server runs the real API over the in-memory service and returns its URL and a valid token.
func server(t *testing.T) (string, string) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: &tenants{byKey: map[string]*controlplane.Tenant{}, reads: map[string]int{}}, TokenKey: pub})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() { _ = app.Shutdown() })
	token, err := api.IssueSuperAdminToken(priv, "test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), token
}

type result struct {
	code        int
	out, errOut string
}

// ctl runs the CLI in-process with env as its whole environment.
func ctl(env map[string]string, stdin string, args ...string) result {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func TestExitCodesAndMessages(t *testing.T) {
	url, token := server(t)
	env := map[string]string{envAPI: url, envToken: token}
	create := []string{"tenant", "create", "acme", "--name", "Acme", "--admin-email", "admin@acme.test"}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		stdin   string
		args    []string
		code    int
		stderr  string // substring expected on stderr
		stdout  string // substring expected on stdout
		noStack bool
	}{
		{name: "no command", env: env, args: nil, code: 2, stderr: "needs a subcommand"},
		{name: "unknown command", env: env, args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{name: "unknown subcommand", env: env, args: []string{"tenant", "frobnicate"}, code: 2, stderr: `unknown command "frobnicate" for "ctl tenant"`},
		{name: "unknown flag", env: env, args: []string{"tenant", "list", "--bogus"}, code: 2, stderr: "unknown flag: --bogus"},
		{name: "missing argument", env: env, args: []string{"tenant", "get"}, code: 2, stderr: "accepts 1 arg(s), received 0"},
		{name: "missing required flag", env: env, args: []string{"tenant", "create", "acme", "--name", "Acme"}, code: 2, stderr: `required flag(s) "admin-email" not set`},
		{name: "bad flag value", env: env, args: []string{"tenant", "create", "acme", "--name", "A", "--admin-email", "a@b.c", "--timeout", "soon"}, code: 2, stderr: "invalid argument"},
		{name: "create", env: env, args: create, code: 0, stderr: "creating acme… live in", stdout: "generated-password-1"},
		{name: "duplicate", env: env, args: create, code: 1, stderr: `error: the key "acme" is already taken by another tenant (conflict)`},
		{name: "invalid key", env: env, args: []string{"tenant", "create", "www", "--name", "W", "--admin-email", "a@b.test"}, code: 1, stderr: `error: key "www" is reserved (invalid)`},
		{name: "invalid email", env: env, args: []string{"tenant", "create", "okay", "--name", "W", "--admin-email", "nope"}, code: 1, stderr: "adminEmail must be a valid email address (invalid)"},
		{name: "creation failed", env: env, args: []string{"tenant", "create", "broken", "--name", "B", "--admin-email", "a@b.test"}, code: 1, stderr: "creation-failed: cell did not answer /healthz"},
		{name: "not found", env: env, args: []string{"tenant", "get", "nobody"}, code: 1, stderr: `error: no tenant with id or key "nobody" (not_found)`},
		{name: "conflict", env: env, args: []string{"tenant", "suspend", "acme"}, code: 1, stderr: "(conflict)"},
		{name: "rotate keys", env: env, args: []string{"tenant", "rotate-keys", "acme"}, code: 0, stderr: "restarting the cell of acme… healthy in", stdout: "signs with the new key k-2"},
		{name: "rotate keys of nobody", env: env, args: []string{"tenant", "rotate-keys", "nobody"}, code: 1, stderr: "(not_found)"},
		{name: "wrong token", env: map[string]string{envAPI: url, envToken: "nope"}, args: []string{"tenant", "list"}, code: 1, stderr: "(unauthorized)"},
		{name: "token from flag wins", env: map[string]string{envAPI: url, envToken: "nope"}, args: []string{"--token", token, "tenant", "list"}, code: 0, stdout: "acme"},
		{name: "no token", env: map[string]string{envAPI: url, envDataDir: t.TempDir()}, args: []string{"tenant", "list"}, code: 1, stderr: "no super-admin token"},
		{name: "unreachable", env: map[string]string{envAPI: "http://127.0.0.1:1", envToken: token}, args: []string{"tenant", "list"}, code: 1, stderr: "(unavailable)"},
		{name: "delete not confirmed", env: env, stdin: "n\n", args: []string{"tenant", "delete", "acme"}, code: 1, stderr: "(aborted)"},
		{name: "delete confirmed", env: env, stdin: "y\n", args: []string{"tenant", "delete", "acme"}, code: 0, stdout: "acme"},
		{name: "delete --yes", env: env, args: []string{"--yes", "tenant", "delete", "acme", "--now"}, code: 0},
		{name: "cell logs", env: env, args: []string{"cell", "logs", "acme", "-n", "2"}, code: 0, stdout: "line 1\nline 2\n"},
		{name: "cell status", env: env, args: []string{"cell", "status", "acme"}, code: 0, stdout: "Healthy    yes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ctl(tc.env, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.stderr) || !strings.Contains(r.out, tc.stdout) {
				t.Fatalf("exit %d (want %d)\nstderr: %s\nstdout: %s", r.code, tc.code, r.errOut, r.out)
			}
			if strings.Contains(r.errOut, "goroutine ") || strings.Contains(r.errOut, "panic") {
				t.Fatalf("stack trace on stderr: %s", r.errOut)
			}
			if r.code != 0 && strings.Count(strings.TrimSpace(r.errOut), "error:") != 1 {
				t.Fatalf("want exactly one error line: %s", r.errOut)
			}
		})
	}
}

func TestCreateJSONAndTokenFile(t *testing.T) {
	url, token := server(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, tokenFileName), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{envAPI: url, envDataDir: dir}
	r := ctl(env, "", "--json", "tenant", "create", "acme", "--name", "Acme", "--admin-email", "admin@acme.test", "--admin-password", "s3cret-pass")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.errOut)
	}
	var got struct {
		ID, Key, URL, State string
		Admin               struct{ Email, Password string }
	}
	dec := json.NewDecoder(strings.NewReader(r.out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("%v: %s", err, r.out)
	}
	if got.ID != "id-acme" || got.Key != "acme" || got.URL != "http://acme.localhost:8080" || got.State != "live" ||
		got.Admin.Email != "admin@acme.test" || got.Admin.Password != "s3cret-pass" {
		t.Fatalf("json %+v", got)
	}
	r = ctl(env, "", "--json", "tenant", "list")
	if r.code != 0 || !strings.Contains(r.out, `"tenants": [`) {
		t.Fatalf("list: %d %s %s", r.code, r.out, r.errOut)
	}
}
