package web_test

import (
	"crypto/ed25519"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"
)

// signFor signs an access token with tc's own key and kid (issuer and audience the cell's own)
// after mut adjusts the claims; mut may drop the tenantId claim.
func signFor(t *testing.T, tc *testCell, key ed25519.PrivateKey, mut func(*auth.Claims)) string {
	t.Helper()
	aud := cell.Audience(tc.cfg.TenantID)
	c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: aud, Subject: "legacy-agent", Audience: jwt.ClaimStrings{aud},
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)), IssuedAt: jwt.NewNumericDate(time.Now())},
		TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleAgent}, Type: auth.TypeAccess}
	mut(&c)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = tc.cfg.SigningKeyID
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// compatCount reads atende_cell_compat_accepted_total{check} from the cell's /metrics (0 when
// the series does not exist yet).
func compatCount(t *testing.T, tc *testCell, check string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", tc.base+"/metrics", nil)
	req.Host = "127.0.0.1"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^atende_cell_compat_accepted_total\{check="` + check + `"\} (\d+)$`).FindSubmatch(data)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestTenancyStrictRefusesWhatCompatAccepts runs the same requests against a strict cell (the
// default) and a compat cell: requests without the tenant context (a Host that is not the
// tenant's, a token of the cell without tenantId) are refused by the first and served, counted,
// by the second; foreign tenants, audiences and subdomains are refused by both.
func TestTenancyStrictRefusesWhatCompatAccepts(t *testing.T) {
	strict := startCell(t, nil)
	compat := startCell(t, func(c *cell.Config) { c.Tenancy = cell.TenancyCompat })
	if strict.cfg.Tenancy != "" {
		t.Fatalf("the default cell is not strict: %q", strict.cfg.Tenancy)
	}
	_, otherCellKey := func() (ed25519.PublicKey, ed25519.PrivateKey) { p, k, _ := ed25519.GenerateKey(nil); return p, k }()
	type request struct {
		name, host string
		token      func(tc *testCell) string
	}
	good := func(tc *testCell) string { return tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent) }
	noTenant := func(tc *testCell) string {
		return signFor(t, tc, tc.cfg.SigningKey, func(c *auth.Claims) { c.TenantID = "" })
	}
	cases := []struct {
		request
		strictStatus, compatStatus int
		strictCode, compatCode     string
		compatHost, compatToken    int // how many compat acceptances of each check the request adds
	}{
		{request{"tenant host, tenant token", "acme.localhost:8080", good}, 200, 200, "", "", 0, 0},
		{request{"bare domain", "localhost:8080", good}, 421, 200, cell.EMisdirected, "", 1, 0},
		{request{"IP address", "127.0.0.1", good}, 421, 200, cell.EMisdirected, "", 1, 0},
		{request{"legacy domain", "chat.acme-legacy.example", good}, 421, 200, cell.EMisdirected, "", 1, 0},
		{request{"token without tenantId", "acme.localhost:8080", noTenant}, 403, 200, cell.EForbidden, "", 0, 1},
		{request{"legacy host and token without tenantId", "localhost", noTenant}, 421, 200, cell.EMisdirected, "", 1, 1},
		{request{"another tenant's subdomain", "globex.localhost:8080", good}, 421, 421, cell.EMisdirected, cell.EMisdirected, 0, 0},
		{request{"another tenant's tenantId", "localhost", func(tc *testCell) string {
			return signFor(t, tc, tc.cfg.SigningKey, func(c *auth.Claims) { c.TenantID = "globex-tenant-id" })
		}}, 421, 403, cell.EMisdirected, cell.EForbidden, 1, 0},
		{request{"another tenant's tenantId on the tenant host", "acme.localhost", func(tc *testCell) string {
			return signFor(t, tc, tc.cfg.SigningKey, func(c *auth.Claims) { c.TenantID = "globex-tenant-id" })
		}}, 403, 403, cell.EForbidden, cell.EForbidden, 0, 0},
		{request{"another audience, no tenantId", "acme.localhost", func(tc *testCell) string {
			return signFor(t, tc, tc.cfg.SigningKey, func(c *auth.Claims) { c.TenantID = ""; c.Audience = jwt.ClaimStrings{cell.Audience("globex")} })
		}}, 401, 401, cell.EUnauthorized, cell.EUnauthorized, 0, 0},
		{request{"another cell's key, no tenantId", "acme.localhost", func(tc *testCell) string {
			return signFor(t, tc, otherCellKey, func(c *auth.Claims) { c.TenantID = "" })
		}}, 401, 401, cell.EUnauthorized, cell.EUnauthorized, 0, 0},
		{request{"no token on a legacy host", "localhost", func(*testCell) string { return "" }}, 421, 401, cell.EMisdirected, cell.EUnauthorized, 1, 0},
	}
	wantHost, wantToken := 0, 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, side := range []struct {
				tc     *testCell
				status int
				code   string
			}{{strict, c.strictStatus, c.strictCode}, {compat, c.compatStatus, c.compatCode}} {
				var e apiError
				st := doReq(t, side.tc.base, c.host, "GET", "/api/chat/queue", c.token(side.tc), nil, &e)
				if st != side.status || e.Error.Code != side.code {
					t.Errorf("%s cell: status %d code %q, want %d %q (%s)", tenancyName(side.tc), st, e.Error.Code, side.status, side.code, e.Error.Message)
				}
			}
			wantHost += c.compatHost
			wantToken += c.compatToken
			if got := compatCount(t, compat, "host"); got != wantHost {
				t.Errorf("compat host acceptances %d, want %d", got, wantHost)
			}
			if got := compatCount(t, compat, "token"); got != wantToken {
				t.Errorf("compat token acceptances %d, want %d", got, wantToken)
			}
		})
	}
	if compatCount(t, strict, "host")+compatCount(t, strict, "token") != 0 {
		t.Fatal("the strict cell counted compat acceptances")
	}

	// An old client logs in on the bare domain: refused by strict, served by compat, and the
	// tokens it gets work there.
	login := map[string]string{"email": "admin@acme.test", "password": "admin-password-1"}
	if st := doReq(t, strict.base, "localhost:8080", "POST", "/api/auth/login", "", login, nil); st != 421 {
		t.Fatalf("strict login on the bare domain: %d, want 421", st)
	}
	var tokens struct {
		AccessToken string `json:"accessToken"`
	}
	if st := doReq(t, compat.base, "localhost:8080", "POST", "/api/auth/login", "", login, &tokens); st != 200 || tokens.AccessToken == "" {
		t.Fatalf("compat login on the bare domain: %d", st)
	}
	if st := doReq(t, compat.base, "localhost:8080", "GET", "/api/auth/me", tokens.AccessToken, nil, nil); st != 200 {
		t.Fatalf("compat /api/auth/me on the bare domain: %d", st)
	}
}

func tenancyName(tc *testCell) string {
	if tc.cfg.Tenancy == cell.TenancyCompat {
		return "compat"
	}
	return "strict"
}

// TestTenancyCompatSocketsFromTheLegacyHost: compat mode lets a page served on the legacy host
// open its socket there (same origin), and nothing else that strict refuses.
func TestTenancyCompatSocketsFromTheLegacyHost(t *testing.T) {
	strict := startCell(t, nil)
	compat := startCell(t, func(c *cell.Config) { c.Tenancy = cell.TenancyCompat })
	dial := func(tc *testCell, host, origin string) int {
		t.Helper()
		var tk struct {
			Ticket string `json:"ticket"`
		}
		if st := tc.do("POST", "/api/ws-ticket", tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent), nil, &tk); st != 200 {
			t.Fatalf("ticket: %d", st)
		}
		h := http.Header{"Host": {host}, "Origin": {origin}}
		conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(tc.base, "http", "ws", 1)+"/ws?ticket="+tk.Ticket, h)
		if err != nil {
			if resp != nil {
				return resp.StatusCode
			}
			t.Fatal(err)
		}
		conn.Close()
		return 101
	}
	for _, c := range []struct {
		name, host, origin string
		strict, compat     int
	}{
		{"tenant host, tenant origin", "acme.localhost:8080", "http://acme.localhost:8080", 101, 101},
		{"legacy host, its own page", "localhost:8080", "http://localhost:8080", 421, 101},
		{"legacy host, tenant's page", "localhost:8080", "http://acme.localhost:8080", 421, 101},
		{"legacy host, another site's page", "localhost:8080", "http://evil.example", 421, 403},
		{"legacy host, same host other port", "localhost:8080", "http://localhost:9999", 421, 403},
		{"tenant host, legacy page", "acme.localhost:8080", "http://localhost:8080", 403, 403},
		{"another tenant's host, its own page", "globex.localhost:8080", "http://globex.localhost:8080", 421, 421},
	} {
		if got := dial(strict, c.host, c.origin); got != c.strict {
			t.Errorf("%s: strict %d, want %d", c.name, got, c.strict)
		}
		if got := dial(compat, c.host, c.origin); got != c.compat {
			t.Errorf("%s: compat %d, want %d", c.name, got, c.compat)
		}
	}
	if got := compatCount(t, compat, "origin"); got != 1 {
		t.Errorf("compat origin acceptances %d, want 1", got)
	}
}
