package api_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"atende/cell"
	"atende/controlplane"
	"atende/controlplane/api"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/process"
	"atende/controlplane/process/processtest"
	"atende/controlplane/supervisor"
)

// fakeBin is the process driver's fake cell, compiled by TestMain.
var fakeBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := processtest.BuildFakeCell()
	if err != nil {
		panic(err)
	}
	fakeBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

type stack struct {
	url  string
	key  ed25519.PrivateKey
	good *api.Client
}

// startStack runs the API on a free port over a real supervisor, registry (embedded FerretDB) and
// process driver (fake cell).
func startStack(t *testing.T) *stack {
	t.Helper()
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	store, err := mongodb.Open(ctx, srv.URI(), "")
	if err != nil {
		t.Fatal(err)
	}
	drv, err := process.New(process.Options{Binary: fakeBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Store: store, Driver: drv, Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = sup.Run(ctx) }()
	pub, priv, _ := ed25519.GenerateKey(nil)
	app := api.New(api.Options{Service: sup, TokenKey: pub, BodyLimit: 4 << 10,
		Paused: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, "paused page")
		})})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = app.Listener(ln) }()
	t.Cleanup(func() {
		_ = app.Shutdown()
		cancel()
		<-done
		drv.StopAll(context.Background())
		_ = store.Close(context.Background())
	})
	token, err := api.IssueSuperAdminToken(priv, "test", cell.ControlPlaneAudience, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{url: "http://" + ln.Addr().String(), key: priv}
	s.good = &api.Client{BaseURL: s.url, Token: token}
	return s
}

// sign returns a token with the given claims, signed by key.
func sign(t *testing.T, key ed25519.PrivateKey, claims api.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func code(err error) string { return controlplane.ErrorCode(err) }

func TestAPI(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()

	t.Run("healthz needs no token", func(t *testing.T) {
		if err := (&api.Client{BaseURL: s.url}).Health(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("tokens", func(t *testing.T) {
		_, otherKey, _ := ed25519.GenerateKey(nil)
		valid := func(mut func(*api.Claims)) api.Claims {
			c := api.Claims{Roles: []string{"super-admin"}, Type: "access", RegisteredClaims: jwt.RegisteredClaims{
				Subject: "x", Issuer: cell.ControlPlaneIssuer, Audience: jwt.ClaimStrings{cell.ControlPlaneAudience},
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
			if mut != nil {
				mut(&c)
			}
			return c
		}
		cellToken, _ := api.IssueSuperAdminToken(s.key, "x", cell.Audience("abc"), time.Hour)
		for _, tc := range []struct {
			name, token, want string
		}{
			{"missing", "", controlplane.EUnauthorized},
			{"garbage", "not-a-jwt", controlplane.EUnauthorized},
			{"other key", sign(t, otherKey, valid(nil)), controlplane.EUnauthorized},
			{"expired", sign(t, s.key, valid(func(c *api.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) })), controlplane.EUnauthorized},
			{"no exp", sign(t, s.key, valid(func(c *api.Claims) { c.ExpiresAt = nil })), controlplane.EUnauthorized},
			{"wrong issuer", sign(t, s.key, valid(func(c *api.Claims) { c.Issuer = "cell:abc" })), controlplane.EUnauthorized},
			{"cell audience", cellToken, controlplane.EUnauthorized},
			{"refresh type", sign(t, s.key, valid(func(c *api.Claims) { c.Type = "refresh" })), controlplane.EUnauthorized},
			{"agent role", sign(t, s.key, valid(func(c *api.Claims) { c.Roles = []string{"agent"} })), controlplane.EForbidden},
			{"valid", sign(t, s.key, valid(nil)), ""},
		} {
			_, err := (&api.Client{BaseURL: s.url, Token: tc.token}).ListTenants(ctx, api.ListOptions{})
			if code(err) != tc.want {
				t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
			}
			var e *controlplane.Error
			if err != nil && (!errors.As(err, &e) || e.RequestID == "" || e.Message == "") {
				t.Errorf("%s: error without message or request id: %#v", tc.name, err)
			}
		}
		// A token signed with HS256 using the public key as secret must not pass (alg pinning).
		hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, valid(nil)).SignedString([]byte(s.key.Public().(ed25519.PublicKey)))
		if _, err := (&api.Client{BaseURL: s.url, Token: hs}).ListTenants(ctx, api.ListOptions{}); code(err) != controlplane.EUnauthorized {
			t.Errorf("HS256 token: got %v", err)
		}
	})

	t.Run("invalid requests", func(t *testing.T) {
		for _, tc := range []struct {
			req     api.CreateTenantRequest
			message string
		}{
			{api.CreateTenantRequest{Key: "ab", Name: "A", AdminEmail: "a@a.test"}, "3 to 63"},
			{api.CreateTenantRequest{Key: "api", Name: "A", AdminEmail: "a@a.test"}, "reserved"},
			{api.CreateTenantRequest{Key: "under_score", Name: "A", AdminEmail: "a@a.test"}, "lowercase letters"},
			{api.CreateTenantRequest{Key: "okay", AdminEmail: "a@a.test"}, "name is required"},
			{api.CreateTenantRequest{Key: "okay", Name: "A", AdminEmail: "nope"}, "adminEmail must be a valid email"},
			{api.CreateTenantRequest{Key: "okay", Name: "A", AdminEmail: "a@a.test", Plan: "gold"}, "plan must be one of"},
			{api.CreateTenantRequest{Key: "okay", Name: "A", AdminEmail: "a@a.test", AdminPassword: "short"}, "adminPassword must be at least 8"},
			{api.CreateTenantRequest{Key: "okay", Name: "A", AdminEmail: "a@a.test", AllowedOrigins: []string{"ftp://x"}}, "allowed origin"},
		} {
			_, err := s.good.CreateTenant(ctx, tc.req)
			if code(err) != controlplane.EInvalid || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("%+v: got %v, want invalid mentioning %q", tc.req, err, tc.message)
			}
		}
		for name, body := range map[string]string{
			"unknown field": `{"key":"okay","name":"A","adminEmail":"a@a.test","colour":"red"}`,
			"not json":      `{"key":`,
			"too large":     `{"key":"okay","name":"` + strings.Repeat("x", 5000) + `"}`,
		} {
			req, _ := http.NewRequest(http.MethodPost, s.url+"/api/tenants", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+s.good.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := 400
			if name == "too large" {
				want = 413
			}
			if resp.StatusCode != want || !strings.Contains(string(data), `"error":{"code":`) {
				t.Errorf("%s: %d %s", name, resp.StatusCode, data)
			}
		}
	})

	t.Run("create, then live, then duplicate", func(t *testing.T) {
		start := time.Now()
		created, err := s.good.CreateTenant(ctx, api.CreateTenantRequest{Key: "acme", Name: "Acme", AdminEmail: "admin@acme.test",
			AllowedOrigins: []string{"https://www.acme.test"}})
		if err != nil {
			t.Fatal(err)
		}
		if created.State != controlplane.StateCreationRequested || created.ID == "" || created.URL != "http://acme.localhost:8080" ||
			created.Admin.Email != "admin@acme.test" || len(created.Admin.Password) != 20 || created.Plan != "free" {
			t.Fatalf("created %+v admin %+v", created.Tenant, created.Admin)
		}
		for {
			tn, err := s.good.GetTenant(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if tn.State == controlplane.StateLive {
				t.Logf("live %s after create", time.Since(start))
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("not live: %+v", tn)
			}
			time.Sleep(100 * time.Millisecond)
		}
		byID, err := s.good.GetTenant(ctx, created.ID)
		if err != nil || byID.Key != "acme" || byID.Cell.Address == "" {
			t.Fatalf("by id: %+v %v", byID, err)
		}
		if _, err := s.good.CreateTenant(ctx, api.CreateTenantRequest{Key: "acme", Name: "Acme", AdminEmail: "x@acme.test"}); code(err) != controlplane.EConflict {
			t.Fatalf("duplicate: %v", err)
		}
		list, err := s.good.ListTenants(ctx, api.ListOptions{})
		if err != nil || len(list) != 1 || list[0].ID != created.ID {
			t.Fatalf("list: %v %v", list, err)
		}
		st, err := s.good.CellStatus(ctx, "acme")
		if err != nil || !st.Healthy || st.State != controlplane.CellRunning {
			t.Fatalf("cell status %+v %v", st, err)
		}
		logs, err := s.good.CellLogs(ctx, "acme", 5)
		if err != nil || !strings.Contains(string(logs), "fakecell: listening") {
			t.Fatalf("logs %q %v", logs, err)
		}
		// An event is appended right after its state is saved: allow it a moment.
		var evs []controlplane.Event
		for deadline := time.Now().Add(5 * time.Second); len(evs) < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if evs, err = s.good.TenantEvents(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
		}
		if len(evs) != 3 || evs[0].To != controlplane.StateCreationRequested || evs[2].To != controlplane.StateLive {
			t.Fatalf("events %+v", evs)
		}
		if _, err := s.good.GetTenant(ctx, "nobody"); code(err) != controlplane.ENotFound {
			t.Fatalf("unknown tenant: %v", err)
		}
	})

	t.Run("suspend, resume, delete", func(t *testing.T) {
		wait := func(idOrKey string, want controlplane.State) {
			t.Helper()
			deadline := time.Now().Add(10 * time.Second)
			for {
				tn, err := s.good.GetTenant(ctx, idOrKey)
				if err == nil && tn.State == want {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %+v %v, want %s", idOrKey, tn, err, want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		tn, err := s.good.SuspendTenant(ctx, "acme")
		if err != nil || tn.State != controlplane.StateSuspendRequested {
			t.Fatalf("%+v %v", tn, err)
		}
		wait("acme", controlplane.StateSuspended)
		if _, err := s.good.ResumeTenant(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		wait("acme", controlplane.StateLive)
		tn, err = s.good.DeleteTenant(ctx, "acme", true)
		if err != nil || tn.State != controlplane.StateDeletionPending {
			t.Fatalf("%+v %v", tn, err)
		}
		wait(tn.ID, controlplane.StateDeleted)
		if tomb, err := s.good.GetTenant(ctx, "acme"); err != nil || tomb.ID != tn.ID || tomb.State != controlplane.StateDeleted {
			t.Fatalf("the key of a deleted tenant should resolve to its tombstone: %+v %v", tomb, err)
		}
		if _, err := s.good.SuspendTenant(ctx, tn.ID); code(err) != controlplane.EConflict {
			t.Fatalf("suspend deleted: %v", err)
		}
		all, _ := s.good.ListTenants(ctx, api.ListOptions{All: true})
		if len(all) != 1 || all[0].State != controlplane.StateDeleted {
			t.Fatalf("all: %+v", all)
		}
	})

	t.Run("pages and unknown routes", func(t *testing.T) {
		for path, want := range map[string]int{"/_pages/paused": 410, "/_pages/notfound": 404, "/nope": 404} {
			resp, err := http.Get(s.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
			}
		}
	})
}

// TestConcurrentCreatesOfOneKey: two creates of the same key at once → one 202, one 409
// (issue 5's failure list), over the real registry on FerretDB.
func TestConcurrentCreatesOfOneKey(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		key := fmt.Sprintf("race%d", round)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = s.good.CreateTenant(ctx, api.CreateTenantRequest{Key: key, Name: "Race", AdminEmail: "admin@race.test"})
			}()
		}
		close(start)
		wg.Wait()
		ok, conflict := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case code(err) == controlplane.EConflict:
				conflict++
			default:
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ok != 1 || conflict != 1 {
			t.Fatalf("round %d: %d accepted, %d conflicts; want 1 and 1", round, ok, conflict)
		}
	}
}
