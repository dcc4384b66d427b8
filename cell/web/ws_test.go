package web_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/service"
	"atende/cell/web"

	"github.com/fasthttp/websocket"
)

// wsFrame is any server frame, decoded loosely.
type wsFrame struct {
	Type     string     `json:"type"`
	Ref      string     `json:"ref"`
	ChatID   string     `json:"chatId"`
	Seq      int64      `json:"seq"`
	Body     string     `json:"body"`
	Code     string     `json:"code"`
	Complete *bool      `json:"complete"`
	LastSeq  int64      `json:"lastSeq"`
	Chat     *cell.Chat `json:"chat"`
	State    string     `json:"state"`
}

func (tc *testCell) dial(t *testing.T, token, origin string) (*websocket.Conn, int) {
	t.Helper()
	var tk service.Ticket
	if st := tc.do("POST", "/api/ws-ticket", token, nil, &tk); st != 200 {
		t.Fatalf("ticket: %d", st)
	}
	h := http.Header{"Host": {"acme.localhost:8080"}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(tc.base, "http", "ws", 1)+"/ws?ticket="+tk.Ticket, h)
	if err != nil {
		if resp != nil {
			return nil, resp.StatusCode
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, 101
}

func send(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	if err := c.WriteJSON(v); err != nil {
		t.Fatal(err)
	}
}

// next reads frames until one of type typ arrives (others are skipped).
func next(t *testing.T, c *websocket.Conn, typ string) wsFrame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var f wsFrame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// TestWebSocketChat covers origin checks, queue events, send/ack/broadcast, typing, resume and
// per-frame authorization.
func TestWebSocketChat(t *testing.T) {
	tc := startCell(t, nil)
	agentTok := tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	for _, origin := range []string{"http://evil.test", "null", "http://acme.localhost:8080.evil.test", "https://acme.localhost:8080"} {
		if _, st := tc.dial(t, agentTok, origin); st != 403 {
			t.Fatalf("origin %q: status %d, want 403", origin, st)
		}
	}
	agent, _ := tc.dial(t, agentTok, "http://acme.localhost:8080")
	visitorTok, chat := tc.newVisitorChat("hello")
	_ = chat
	if f := next(t, agent, "chat.queued"); f.Chat == nil || f.Chat.ID != chat.ID {
		t.Fatalf("queued event: %+v", f)
	}
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", agentTok, nil, nil); st != 200 {
		t.Fatalf("accept %d", st)
	}
	visitor, _ := tc.dial(t, visitorTok, "")
	send(t, visitor, map[string]any{"type": "join-chat", "chatId": chat.ID, "ref": "j1"})
	if f := next(t, visitor, "joined"); f.Ref != "j1" || f.LastSeq != 1 {
		t.Fatalf("joined: %+v", f)
	}
	send(t, agent, map[string]any{"type": "join-chat", "chatId": chat.ID})
	next(t, agent, "joined")
	for i := 1; i <= 20; i++ {
		send(t, visitor, map[string]any{"type": "send-message", "chatId": chat.ID, "body": fmt.Sprint("v", i), "clientMsgId": fmt.Sprint("v-", i), "ref": fmt.Sprint(i)})
		if ack := next(t, visitor, "ack"); ack.Seq != int64(i+1) || ack.Ref != fmt.Sprint(i) {
			t.Fatalf("ack %d: %+v", i, ack)
		}
		if m := next(t, agent, "message"); m.Seq != int64(i+1) || m.Body != fmt.Sprint("v", i) {
			t.Fatalf("agent got %+v", m)
		}
	}
	// A retried clientMsgId is acked with the same seq and not broadcast again.
	send(t, visitor, map[string]any{"type": "send-message", "chatId": chat.ID, "body": "v1", "clientMsgId": "v-1", "ref": "again"})
	if ack := next(t, visitor, "ack"); ack.Seq != 2 {
		t.Fatalf("retry ack seq %d, want 2", ack.Seq)
	}
	send(t, visitor, map[string]any{"type": "typing", "chatId": chat.ID, "state": "on"})
	if f := next(t, agent, "typing"); f.State != "on" {
		t.Fatalf("typing: %+v", f)
	}
	// Resume returns exactly what was missed.
	send(t, agent, map[string]any{"type": "resume", "chatId": chat.ID, "since": 15, "ref": "r"})
	var seqs []int64
	agent.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := agent.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var f wsFrame
		json.Unmarshal(data, &f)
		if f.Type == "message" && f.ChatID == chat.ID {
			seqs = append(seqs, f.Seq)
		}
		if f.Type == "resumed" {
			if f.Complete == nil || !*f.Complete || f.LastSeq != 21 {
				t.Fatalf("resumed: %+v", f)
			}
			break
		}
	}
	if fmt.Sprint(seqs) != "[16 17 18 19 20 21]" {
		t.Fatalf("resumed seqs %v", seqs)
	}
	// Another visitor can neither join nor write into this chat.
	otherTok, _ := tc.newVisitorChat("other")
	other, _ := tc.dial(t, otherTok, "")
	send(t, other, map[string]any{"type": "join-chat", "chatId": chat.ID, "ref": "x"})
	if f := next(t, other, "error"); f.Code != cell.ENotFound {
		t.Fatalf("foreign join: %+v", f)
	}
	send(t, other, map[string]any{"type": "send-message", "chatId": chat.ID, "body": "intrude", "clientMsgId": "i-1", "ref": "y"})
	if f := next(t, other, "error"); f.Code != cell.ENotFound {
		t.Fatalf("foreign send: %+v", f)
	}
	// Both refusals are in the audit log, with the chat they probed.
	var log struct {
		Entries []cell.AuditEntry `json:"entries"`
	}
	tc.do("GET", "/api/audit", tc.token(auth.TypeAccess, "admin-1", cell.RoleTenantAdmin), nil, &log)
	probes := 0
	for _, e := range log.Entries {
		if e.Action == "frame.denied" && strings.HasSuffix(e.Target, chat.ID) && e.IP == "127.0.0.1" {
			probes++
		}
	}
	if probes != 2 {
		t.Fatalf("%d audited frame refusals for the probed chat, want 2", probes)
	}
}

// TestLogoutAndRemovalEndSessionsAndSockets: tokens stop working at once and open sockets close.
func TestLogoutAndRemovalEndSessionsAndSockets(t *testing.T) {
	tc := startCell(t, nil)
	var admin service.Tokens
	if st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "admin-password-1"}, &admin); st != 200 {
		t.Fatalf("admin login: %d", st)
	}
	var created service.AgentCreated
	if st := tc.do("POST", "/api/agents", admin.AccessToken, map[string]string{"email": "ag@acme.test", "name": "Ag", "password": "agent-password"}, &created); st != 201 {
		t.Fatalf("create agent: %d", st)
	}
	login := func() service.Tokens {
		var tk service.Tokens
		if st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": "ag@acme.test", "password": "agent-password"}, &tk); st != 200 {
			t.Fatalf("agent login: %d", st)
		}
		return tk
	}
	closed := func(c *websocket.Conn) error {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return err
			}
		}
	}
	// Logout: the access token dies at once and the socket of that session closes.
	first := login()
	other := login()
	ws, _ := tc.dial(t, first.AccessToken, "")
	otherWS, _ := tc.dial(t, other.AccessToken, "")
	if st := tc.do("POST", "/api/auth/logout", first.AccessToken, nil, nil); st != 204 {
		t.Fatalf("logout: %d", st)
	}
	if st := tc.do("GET", "/api/chat/queue", first.AccessToken, nil, nil); st != 401 {
		t.Fatalf("access token after logout: %d, want 401", st)
	}
	if err := closed(ws); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("socket after logout: %v, want close 1008", err)
	}
	if st := tc.do("GET", "/api/chat/queue", other.AccessToken, nil, nil); st != 200 {
		t.Fatalf("another session of the same agent after logout: %d, want 200", st)
	}
	// Removal: every session of the agent ends, sockets included.
	if st := tc.do("DELETE", "/api/agents/"+created.Agent.ID, admin.AccessToken, nil, nil); st != 204 {
		t.Fatalf("delete agent: %d", st)
	}
	if st := tc.do("GET", "/api/chat/queue", other.AccessToken, nil, nil); st != 401 {
		t.Fatalf("token of a removed agent: %d, want 401", st)
	}
	if err := closed(otherWS); !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
		t.Fatalf("socket of a removed agent: %v, want close 1008", err)
	}
	var e apiError
	if st := tc.do("POST", "/api/auth/refresh", "", map[string]string{"refreshToken": other.RefreshToken}, &e); st != 401 {
		t.Fatalf("refresh of a removed agent: %d, want 401", st)
	}
}

// TestFrameRateIsBoundedPerConnection: a flood of frames is refused past the burst, and the
// connection stays usable.
func TestFrameRateIsBoundedPerConnection(t *testing.T) {
	tc := startCell(t, nil)
	conn, _ := tc.dial(t, tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent), "")
	const n = web.FrameBurst + 50
	for i := 0; i < n; i++ {
		send(t, conn, map[string]any{"type": "ping", "ref": fmt.Sprint(i)})
	}
	pongs, limited := 0, 0
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for pongs+limited < n {
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var f wsFrame
		json.Unmarshal(data, &f)
		switch {
		case f.Type == "pong":
			pongs++
		case f.Type == "error" && f.Code == cell.ERateLimited:
			limited++
		}
	}
	if pongs < web.FrameBurst || pongs > web.FrameBurst+10 || limited == 0 {
		t.Fatalf("%d pongs and %d refusals for %d frames, want about %d pongs", pongs, limited, n, web.FrameBurst)
	}
	time.Sleep(100 * time.Millisecond)
	send(t, conn, map[string]any{"type": "ping", "ref": "after"})
	if f := next(t, conn, "pong"); f.Ref != "after" {
		t.Fatalf("after the flood: %+v", f)
	}
}

// TestPasswordChangeAndDisableEndSessions: a password change keeps only the changing device
// logged in; disabling an agent ends all their sessions and sockets until re-enabled.
func TestPasswordChangeAndDisableEndSessions(t *testing.T) {
	tc := startCell(t, nil)
	login := func(email, password string) (service.Tokens, int) {
		var tk service.Tokens
		st := tc.do("POST", "/api/auth/login", "", map[string]string{"email": email, "password": password}, &tk)
		return tk, st
	}
	admin, _ := login("admin@acme.test", "admin-password-1")
	var created service.AgentCreated
	tc.do("POST", "/api/agents", admin.AccessToken, map[string]string{"email": "ag@acme.test", "password": "agent-password"}, &created)
	phone, _ := login("ag@acme.test", "agent-password")
	laptop, _ := login("ag@acme.test", "agent-password")
	phoneWS, _ := tc.dial(t, phone.AccessToken, "")
	var e apiError
	if st := tc.do("POST", "/api/auth/password", laptop.AccessToken, map[string]string{"currentPassword": "wrong-one", "newPassword": "new-password-1"}, &e); st != 401 {
		t.Fatalf("wrong current password: %d, want 401", st)
	}
	var fresh service.Tokens
	if st := tc.do("POST", "/api/auth/password", laptop.AccessToken, map[string]string{"currentPassword": "agent-password", "newPassword": "new-password-1"}, &fresh); st != 200 {
		t.Fatalf("password change: %d", st)
	}
	for name, tok := range map[string]string{"phone": phone.AccessToken, "laptop (old token)": laptop.AccessToken} {
		if st := tc.do("GET", "/api/auth/me", tok, nil, nil); st != 401 {
			t.Errorf("%s after the password change: %d, want 401", name, st)
		}
	}
	phoneWS.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := phoneWS.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.ClosePolicyViolation) {
				t.Fatalf("phone socket: %v, want close 1008", err)
			}
			break
		}
	}
	if st := tc.do("GET", "/api/auth/me", fresh.AccessToken, nil, nil); st != 200 {
		t.Fatalf("the changing device's new token: %d, want 200", st)
	}
	if _, st := login("ag@acme.test", "agent-password"); st != 401 {
		t.Fatalf("old password: %d, want 401", st)
	}
	// Disable: everything ends; enable: the agent can log in again.
	if st := tc.do("PATCH", "/api/agents/"+created.Agent.ID, admin.AccessToken, map[string]bool{"disabled": true}, nil); st != 200 {
		t.Fatalf("disable: %d", st)
	}
	if st := tc.do("GET", "/api/auth/me", fresh.AccessToken, nil, nil); st != 401 {
		t.Fatalf("token of a disabled agent: %d, want 401", st)
	}
	if _, st := login("ag@acme.test", "new-password-1"); st != 401 {
		t.Fatalf("login of a disabled agent: %d, want 401", st)
	}
	if st := tc.do("PATCH", "/api/agents/"+created.Agent.ID, admin.AccessToken, map[string]bool{"disabled": false}, nil); st != 200 {
		t.Fatalf("enable: %d", st)
	}
	if _, st := login("ag@acme.test", "new-password-1"); st != 200 {
		t.Fatalf("login after re-enabling: %d, want 200", st)
	}
}
