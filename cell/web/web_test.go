package web_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/service"
	"atende/cell/web"

	"github.com/golang-jwt/jwt/v5"
)

// TestCellRefusesForeignHostAudienceAndTenant holds the three independent checks of DESIGN.md §4.
func TestCellRefusesForeignHostAudienceAndTenant(t *testing.T) {
	tc := startCell(t, nil)
	good := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	sign := func(key ed25519.PrivateKey, kid string, mut func(*auth.Claims)) string {
		c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: cell.Audience(tc.cfg.TenantID), Subject: "agent-1",
			Audience: jwt.ClaimStrings{cell.Audience(tc.cfg.TenantID)}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleAgent}, Type: auth.TypeAccess}
		mut(&c)
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(nil)
	cases := []struct {
		name, host, token string
		status            int
		code              string
	}{
		{"valid", "acme.localhost:8080", good, 200, ""},
		{"foreign host", "globex.localhost:8080", good, 421, cell.EMisdirected},
		{"foreign audience", "acme.localhost", sign(tc.cfg.SigningKey, "k1", func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"cell:other"} }), 401, cell.EUnauthorized},
		{"foreign tenantId claim", "acme.localhost", sign(tc.cfg.SigningKey, "k1", func(c *auth.Claims) { c.TenantID = "other" }), 403, cell.EForbidden},
		{"another cell's key", "acme.localhost", sign(otherKey, "k1", func(*auth.Claims) {}), 401, cell.EUnauthorized},
		{"missing exp", "acme.localhost", sign(tc.cfg.SigningKey, "k1", func(c *auth.Claims) { c.ExpiresAt = nil }), 401, cell.EUnauthorized},
		{"refresh as access", "acme.localhost", sign(tc.cfg.SigningKey, "k1", func(c *auth.Claims) { c.Type = auth.TypeRefresh }), 401, cell.EUnauthorized},
		{"unknown kid", "acme.localhost", sign(tc.cfg.SigningKey, "../k2", func(*auth.Claims) {}), 401, cell.EUnauthorized},
		{"alg none", "acme.localhost", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + jwtPayload(tc) + ".", 401, cell.EUnauthorized},
		{"no token", "acme.localhost", "", 401, cell.EUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var e apiError
			st := doReq(t, tc.base, c.host, "GET", "/api/chat/queue", c.token, nil, &e)
			if st != c.status || e.Error.Code != c.code {
				t.Fatalf("status %d code %q, want %d %q (%s)", st, e.Error.Code, c.status, c.code, e.Error.Message)
			}
		})
	}
}

func jwtPayload(tc *testCell) string {
	return jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "tenantId": tc.cfg.TenantID,
		"aud": cell.Audience(tc.cfg.TenantID), "iss": cell.Audience(tc.cfg.TenantID), "typ": "access", "roles": []string{"agent"},
		"exp": time.Now().Add(time.Hour).Unix()}).Raw
}

// TestAcceptHasExactlyOneWinner races 50 agents for each of 5 chats.
func TestAcceptHasExactlyOneWinner(t *testing.T) {
	tc := startCell(t, nil)
	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = tc.token(auth.TypeAccess, fmt.Sprintf("agent-%d", i), cell.RoleAgent)
	}
	for round := 0; round < 5; round++ {
		_, chat := tc.newVisitorChat("hello")
		statuses := make([]int, len(tokens))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, tok := range tokens {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				statuses[i] = tc.do("POST", "/api/chat/"+chat.ID+"/accept", tok, nil, nil)
			}()
		}
		close(start)
		wg.Wait()
		counts := map[int]int{}
		for _, s := range statuses {
			counts[s]++
		}
		if counts[200] != 1 || counts[409] != 49 {
			t.Fatalf("round %d: statuses %v, want exactly one 200 and 49 409", round, counts)
		}
		winner := 0
		for i, st := range statuses {
			if st == 200 {
				winner = i
			}
		}
		var got cell.Chat
		tc.do("GET", "/api/chats/"+chat.ID, tokens[winner], nil, &got)
		if got.Status != cell.ChatActive || got.AgentID != fmt.Sprintf("agent-%d", winner) {
			t.Fatalf("round %d: chat after accept: %+v", round, got)
		}
		// Another agent no longer sees an accepted chat (it left the shared queue).
		if st := tc.do("GET", "/api/chats/"+chat.ID, tokens[(winner+1)%len(tokens)], nil, nil); st != 404 {
			t.Fatalf("round %d: a losing agent reads the accepted chat: %d, want 404", round, st)
		}
	}
}

// TestMessagesGetGaplessSeqAndIdempotentRetry sends concurrently from both sides and retries.
func TestMessagesGetGaplessSeqAndIdempotentRetry(t *testing.T) {
	tc := startCell(t, nil)
	visitor, chat := tc.newVisitorChat("first")
	agent := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", agent, nil, nil); st != 200 {
		t.Fatalf("accept: %d", st)
	}
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := visitor
			if i%2 == 1 {
				tok = agent
			}
			var m cell.Message
			if st := tc.do("POST", "/api/messages", tok, map[string]string{"chatId": chat.ID, "body": fmt.Sprint("m", i), "clientMsgId": fmt.Sprint("c-", i)}, &m); st != 201 {
				t.Errorf("send %d: status %d", i, st)
			}
		}()
	}
	wg.Wait()
	var retry cell.Message
	if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "body": "m0", "clientMsgId": "c-0"}, &retry); st != 200 {
		t.Fatalf("retry status %d, want 200", st)
	}
	var h service.History
	tc.do("GET", "/api/chats/"+chat.ID+"/messages?since=0&limit=500", agent, nil, &h)
	if len(h.Messages) != 41 || !h.Complete || h.LastSeq != 41 {
		t.Fatalf("history: %d messages, complete %v, lastSeq %d; want 41, true, 41", len(h.Messages), h.Complete, h.LastSeq)
	}
	seen := map[string]bool{}
	for i, m := range h.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
		if seen[m.ClientMsgID] {
			t.Fatalf("clientMsgId %s stored twice", m.ClientMsgID)
		}
		seen[m.ClientMsgID] = true
		if m.ClientMsgID == "c-0" && m.ID != retry.ID {
			t.Fatalf("retry returned %s, stored %s", retry.ID, m.ID)
		}
	}
	var page service.History
	tc.do("GET", "/api/chats/"+chat.ID+"/messages?since=10&limit=5", agent, nil, &page)
	if len(page.Messages) != 5 || page.Messages[0].Seq != 11 || page.Complete {
		t.Fatalf("page since 10 limit 5: %d messages from %d, complete %v", len(page.Messages), page.Messages[0].Seq, page.Complete)
	}
}

// TestOneOpenChatPerVisitor opens chats concurrently for one visitor.
func TestOneOpenChatPerVisitor(t *testing.T) {
	tc := startCell(t, nil)
	visitor, first := tc.newVisitorChat("hi")
	ids := make([]string, 20)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c cell.Chat
			tc.do("POST", "/api/chats", visitor, map[string]string{}, &c)
			ids[i] = c.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != first.ID {
			t.Fatalf("got chat %s, want the open chat %s", id, first.ID)
		}
	}
	if st := tc.do("POST", "/api/chat/"+first.ID+"/resolve", visitor, nil, nil); st != 200 {
		t.Fatalf("resolve: %d", st)
	}
	var next cell.Chat
	if st := tc.do("POST", "/api/chats", visitor, map[string]string{}, &next); st != 201 || next.ID == first.ID {
		t.Fatalf("after resolve: status %d chat %s, want a new chat", st, next.ID)
	}
}

// TestAttachmentRoundTrip uploads through the presigned PUT and downloads identical bytes.
func TestAttachmentRoundTrip(t *testing.T) {
	tc := startCell(t, func(c *cell.Config) { c.PresignTTL = 2 * time.Second })
	visitor, chat := tc.newVisitorChat("a file follows")
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{7}, 1000)...)
	announce := func(ct string, size int) (service.Upload, int) {
		var up service.Upload
		st := tc.do("POST", "/api/attachments", visitor, map[string]any{"chatId": chat.ID, "filename": "../../shot.png", "contentType": ct, "size": size}, &up)
		return up, st
	}
	put := func(up service.Upload, ct string, body []byte) int {
		req, _ := http.NewRequest("PUT", up.UploadURL, bytes.NewReader(body))
		for k, v := range up.UploadHeaders {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if _, st := announce("text/html", len(png)); st != 400 {
		t.Fatalf("disallowed content type: %d, want 400", st)
	}
	if _, st := announce("image/png", 2<<20); st != 413 {
		t.Fatalf("oversize: %d, want 413", st)
	}
	up, st := announce("image/png", len(png))
	if st != 201 {
		t.Fatalf("announce: %d", st)
	}
	if st := put(up, "text/html", png); st != 403 {
		t.Fatalf("PUT with another content type: %d, want 403", st)
	}
	if st := put(up, "image/png", png); st != 200 {
		t.Fatalf("PUT: %d", st)
	}
	if st := put(up, "image/png", bytes.Repeat([]byte{'X'}, len(png))); st != 412 {
		t.Fatalf("second PUT to the same URL (overwrite): %d, want 412", st)
	}
	var msg cell.Message
	if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "clientMsgId": "att-1", "attachmentId": up.AttachmentID}, &msg); st != 201 || msg.Attachment == nil || msg.Attachment.Filename != "shot.png" {
		t.Fatalf("message with attachment: %d %+v", st, msg.Attachment)
	}
	agent := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	var d service.Download
	req, _ := http.NewRequest("GET", tc.base+"/api/attachments/"+up.AttachmentID, nil)
	req.Host = "acme.localhost"
	req.Header.Set("Authorization", "Bearer "+agent)
	req.Header.Set("Accept", "application/json")
	if st := doJSON(t, req, &d); st != 200 {
		t.Fatalf("download url: %d", st)
	}
	resp, err := http.Get(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, png) || resp.Header.Get("Content-Disposition") == "" {
		t.Fatalf("downloaded %d bytes (disposition %q), want the %d uploaded", len(got), resp.Header.Get("Content-Disposition"), len(png))
	}
	up2, _ := announce("image/png", len(png))
	time.Sleep(3 * time.Second)
	if st := put(up2, "image/png", png); st != 403 {
		t.Fatalf("PUT after expiry: %d, want 403", st)
	}
}

// TestChatStateSurvivesConcurrentWrites holds what a reviewer broke: on FerretDB an update is a
// read-modify-write of the whole document, so an accept or resolve racing with message traffic
// (and the lastSeq flush) used to answer 200 and then be overwritten.
func TestChatStateSurvivesConcurrentWrites(t *testing.T) {
	tc := startCell(t, nil)
	agent := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	burst := func(visitor, chatID, prefix string, wg *sync.WaitGroup) {
		for i := 0; i < 15; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chatID, "body": "x", "clientMsgId": fmt.Sprint(prefix, i)}, nil)
			}()
		}
	}
	// Messages racing the resolve must not land after it; with reopening on (the default) a
	// visitor message after the resolve would legitimately reopen the chat, so it is off here.
	admin := tc.token(auth.TypeAccess, "admin-1", cell.RoleTenantAdmin)
	if st := tc.do("PUT", "/api/settings", admin, map[string]any{"reopenWindowMinutes": -1}, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	for round := 0; round < 3; round++ {
		visitor, chat := tc.newVisitorChat("hi")
		var wg sync.WaitGroup
		burst(visitor, chat.ID, "pre-", &wg)
		var accepted cell.Chat
		if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", agent, nil, &accepted); st != 200 {
			t.Fatalf("accept: %d", st)
		}
		burst(visitor, chat.ID, "post-", &wg)
		wg.Wait()
		tc.svc.FlushHints(context.Background())
		var got cell.Chat
		tc.do("GET", "/api/chats/"+chat.ID, agent, nil, &got)
		if got.Status != cell.ChatActive || got.AgentID != "agent-1" {
			t.Fatalf("round %d: accept answered 200, chat is now %s/%q", round, got.Status, got.AgentID)
		}
		burst(visitor, chat.ID, "late-", &wg)
		var resolved cell.Chat
		if st := tc.do("POST", "/api/chat/"+chat.ID+"/resolve", agent, nil, &resolved); st != 200 {
			t.Fatalf("resolve: %d", st)
		}
		wg.Wait()
		tc.svc.FlushHints(context.Background())
		tc.do("GET", "/api/chats/"+chat.ID, agent, nil, &got)
		if got.Status != cell.ChatResolved || got.ResolvedAt == nil {
			t.Fatalf("round %d: resolve answered 200, chat is now %s", round, got.Status)
		}
		var h service.History
		tc.do("GET", "/api/chats/"+chat.ID+"/messages?limit=500", agent, nil, &h)
		for _, m := range h.Messages {
			if m.CreatedAt.After(*got.ResolvedAt) {
				t.Fatalf("round %d: message %d stored at %v, after the chat was resolved at %v", round, m.Seq, m.CreatedAt, *got.ResolvedAt)
			}
		}
	}
}

// TestInputIsRefusedBeforeAnyQuery: wrong content type, operator keys, and edge values of since.
func TestInputIsRefusedBeforeAnyQuery(t *testing.T) {
	tc := startCell(t, nil)
	visitor, chat := tc.newVisitorChat("hi")
	agent := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	tc.do("POST", "/api/chat/"+chat.ID+"/accept", agent, nil, nil)

	req, _ := http.NewRequest("POST", tc.base+"/api/auth/login", strings.NewReader(`{"email":"admin@acme.test","password":"admin-password-1"}`))
	req.Host = "acme.localhost"
	req.Header.Set("Content-Type", "text/plain")
	var e apiError
	if st := doJSON(t, req, &e); st != 415 || e.Error.Code != cell.EInvalid {
		t.Fatalf("text/plain login: %d %q, want 415 invalid", st, e.Error.Code)
	}
	for _, body := range []any{
		map[string]any{"email": map[string]string{"$ne": ""}, "password": "x"},
		map[string]any{"email": "admin@acme.test", "password": "admin-password-1", "extra": map[string]any{"$where": "1"}},
	} {
		if st := tc.do("POST", "/api/auth/login", "", body, &e); st != 400 {
			t.Fatalf("operator injection %v: %d, want 400", body, st)
		}
	}
	var h service.History
	if st := tc.do("GET", "/api/chats/"+chat.ID+"/messages?since=9223372036854775807", agent, nil, &h); st != 200 || !h.Complete || len(h.Messages) != 0 {
		t.Fatalf("since=max: %d complete=%v n=%d, want 200, complete, empty", st, h.Complete, len(h.Messages))
	}
	// A clientMsgId used by the agent cannot be claimed by the visitor (and vice versa).
	if st := tc.do("POST", "/api/messages", agent, map[string]string{"chatId": chat.ID, "body": "agent", "clientMsgId": "shared-1"}, nil); st != 201 {
		t.Fatalf("agent send: %d", st)
	}
	if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "body": "visitor", "clientMsgId": "shared-1"}, &e); st != 409 {
		t.Fatalf("visitor reusing the agent's clientMsgId: %d, want 409", st)
	}
}

// TestSecurityHeadersAndLoginThrottle: pages cannot be framed, the widget script can be loaded
// by other sites, and password guessing on one account is throttled without locking out others.
func TestSecurityHeadersAndLoginThrottle(t *testing.T) {
	tc := startCell(t, nil)
	get := func(path string) http.Header {
		req, _ := http.NewRequest("GET", tc.base+path, nil)
		req.Host = "acme.localhost:8080"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	console := get("/console")
	if csp := console.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("console CSP %q", csp)
	}
	if console.Get("X-Frame-Options") != "DENY" || console.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("console headers: XFO %q nosniff %q", console.Get("X-Frame-Options"), console.Get("X-Content-Type-Options"))
	}
	if w := get("/widget.js"); w.Get("Cross-Origin-Resource-Policy") != "cross-origin" || !strings.HasPrefix(w.Get("Content-Type"), "text/javascript") {
		t.Errorf("widget.js: CORP %q type %q", w.Get("Cross-Origin-Resource-Policy"), w.Get("Content-Type"))
	}
	var e apiError
	limit := web.LimitLoginAccount.PerMinute
	for i := 1; i <= limit+1; i++ {
		st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "wrong-password"}, &e)
		if i <= limit && st != 401 {
			t.Fatalf("attempt %d: %d, want 401", i, st)
		}
		if i > limit && (st != 429 || e.Error.Code != cell.ERateLimited) {
			t.Fatalf("attempt %d: %d %q, want 429 rate_limited", i, st, e.Error.Code)
		}
	}
	if st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": "other@acme.test", "password": "x"}, nil); st != 401 {
		t.Fatalf("another account from the same address: %d, want 401 (not throttled)", st)
	}
}

// TestUploadsAreCheckedByMagicBytes: a file announced as PNG must be a PNG.
func TestUploadsAreCheckedByMagicBytes(t *testing.T) {
	tc := startCell(t, nil)
	visitor, chat := tc.newVisitorChat("files")
	for _, c := range []struct {
		name, ct string
		body     []byte
		want     int
	}{
		{"html as png", "image/png", []byte("<html><script>alert(1)</script></html>"), 400},
		{"text as pdf", "application/pdf", []byte("just some text, not a PDF"), 400},
		{"real png", "image/png", append([]byte{0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'}, make([]byte, 64)...), 201},
		{"real text", "text/plain", []byte("hello, plain text"), 201},
	} {
		body := c.body
		var up service.Upload
		if st := tc.do("POST", "/api/attachments", visitor, map[string]any{"chatId": chat.ID, "filename": "f", "contentType": c.ct, "size": len(body)}, &up); st != 201 {
			t.Fatalf("%s: announce %d", c.name, st)
		}
		req, _ := http.NewRequest("PUT", up.UploadURL, bytes.NewReader(body))
		for k, v := range up.UploadHeaders {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: PUT %v %v", c.name, err, resp.Status)
		}
		resp.Body.Close()
		var e apiError
		if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "clientMsgId": "m-" + strings.ReplaceAll(c.name, " ", "-"), "attachmentId": up.AttachmentID}, &e); st != c.want {
			t.Fatalf("%s: message with attachment %d (%s), want %d", c.name, st, e.Error.Message, c.want)
		}
	}
}

// TestAuditLog: logins (both outcomes), agent changes and denied requests are recorded with
// the caller's address, and only tenant-admins read them.
func TestAuditLog(t *testing.T) {
	tc := startCell(t, nil)
	tc.do("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "wrong-password"}, nil)
	var admin service.Tokens
	if st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "admin-password-1"}, &admin); st != 200 {
		t.Fatalf("login: %d", st)
	}
	tc.do("POST", "/api/agents", admin.AccessToken, map[string]string{"email": "new@acme.test", "password": "agent-password"}, nil)
	doReq(t, tc.base, "globex.localhost:8080", "GET", "/api/chat/queue", admin.AccessToken, nil, nil) // 421
	var log struct {
		Entries []cell.AuditEntry `json:"entries"`
	}
	if st := tc.do("GET", "/api/audit", admin.AccessToken, nil, &log); st != 200 {
		t.Fatalf("audit: %d", st)
	}
	want := map[string]string{"auth.login/denied": "", "auth.login/ok": "", "agent.create/ok": "", "request.denied/denied": ""}
	for _, e := range log.Entries {
		key := e.Action + "/" + e.Outcome
		if _, ok := want[key]; ok {
			want[key] = e.IP
		}
	}
	for key, ip := range want {
		if ip != "127.0.0.1" {
			t.Errorf("audit entry %s: ip %q (missing or without address)", key, ip)
		}
	}
	visitor, _ := tc.newVisitorChat("hi")
	if st := tc.do("GET", "/api/audit", visitor, nil, nil); st != 403 {
		t.Fatalf("visitor reading the audit log: %d, want 403", st)
	}
}

// TestMetrics: denied requests are counted; the metrics are not served on the tenant's host.
func TestMetrics(t *testing.T) {
	tc := startCell(t, nil)
	doReq(t, tc.base, "globex.localhost", "GET", "/api/chat/queue", "", nil, nil) // 421
	if st := tc.do("GET", "/metrics", "", nil, nil); st != 404 {
		t.Fatalf("metrics on the tenant host: %d, want 404", st)
	}
	req, _ := http.NewRequest("GET", tc.base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`atende_cell_requests_denied_total{reason="misdirected"} 1`, "atende_cell_store_foreign_reads_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestPlanLimitsUsers: concurrent creates never pass the plan's user limit.
func TestPlanLimitsUsers(t *testing.T) {
	tc := startCell(t, func(c *cell.Config) { c.MaxAgents = 3 }) // the bootstrap admin is one
	admin := tc.token(auth.TypeAccess, "admin-1", cell.RoleTenantAdmin)
	statuses := make([]int, 6)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = tc.do("POST", "/api/agents", admin, map[string]string{"email": fmt.Sprintf("a%d@acme.test", i), "password": "agent-password"}, nil)
		}()
	}
	wg.Wait()
	count := map[int]int{}
	for _, st := range statuses {
		count[st]++
	}
	if count[201] != 2 || count[403] != 4 {
		t.Fatalf("6 concurrent creates with room for 2: %v", count)
	}
}

// TestSuperAdminTokensOnlyOnAdminEndpoints: a control-plane token for this cell's audience
// reaches admin endpoints only; for another audience it is refused everywhere.
func TestSuperAdminTokensOnlyOnAdminEndpoints(t *testing.T) {
	tc := startCell(t, nil)
	_, chat := tc.newVisitorChat("hi")
	sign := func(aud string) string {
		c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: cell.ControlPlaneIssuer, Subject: "root",
			Audience: jwt.ClaimStrings{aud}, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
			TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleSuperAdmin, cell.RoleTenantAdmin, cell.RoleAgent}, Type: auth.TypeAccess}
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(tc.cpKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	own, foreign := sign(cell.Audience(tc.cfg.TenantID)), sign(cell.Audience("another-tenant"))
	cases := []struct {
		method, path string
		token        string
		want         int
	}{
		{"GET", "/api/agents", own, 200},
		{"GET", "/api/audit", own, 200},
		{"GET", "/api/chat/queue", own, 403},
		{"GET", "/api/chats/" + chat.ID, own, 404},
		{"POST", "/api/chat/" + chat.ID + "/accept", own, 403},
		{"POST", "/api/ws-ticket", own, 403},
		{"GET", "/api/agents", foreign, 401},
	}
	for _, c := range cases {
		if st := tc.do(c.method, c.path, c.token, nil, nil); st != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, st, c.want)
		}
	}
}
