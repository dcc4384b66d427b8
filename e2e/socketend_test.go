package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestEndedSessionSocketStopsActing checks, through the edge, that a WebSocket whose session was
// ended (logout) stops acting at once even if its client ignores the close frame: it keeps
// writing send-message frames without reading, as a hostile or broken client would, and none of
// them may be stored. The socket must also be gone within seconds, not at the read deadline.
func TestEndedSessionSocketStopsActing(t *testing.T) {
	s := startStack(t, "ATENDE_SEED_DEV=false")
	tn, _ := s.createTenant("sockend")
	admin := s.login("sockend", tn.Admin.Email, tn.Admin.Password)
	if st, body := s.on("sockend", "POST", "/api/agents", admin.AccessToken, map[string]string{"email": "agent@sockend.test", "name": "Agent", "password": "agent-password"}, nil); st != 201 {
		t.Fatalf("create agent: %d %s", st, body)
	}
	agent := s.login("sockend", "agent@sockend.test", "agent-password")
	// The agent's other session (another tab) keeps a console socket open: an agent is online,
	// so the visitor may open a chat; logging out one session leaves this one alone.
	s.dial("sockend", s.login("sockend", "agent@sockend.test", "agent-password").AccessToken)
	_, c := s.visitor("sockend", "hello")
	if st, body := s.on("sockend", "POST", "/api/chat/"+c.ID+"/accept", agent.AccessToken, nil, nil); st != 200 {
		t.Fatalf("accept: %d %s", st, body)
	}
	var cs struct {
		Address string `json:"address"`
	}
	if st, body := s.cp("GET", "/api/tenants/"+tn.ID+"/cell", nil, &cs); st != 200 {
		t.Fatalf("cell status: %d %s", st, body)
	}

	conn := slowDial(t, s, "sockend", agent.AccessToken)
	_ = conn.WriteJSON(map[string]any{"type": "join-chat", "chatId": c.ID})
	_ = conn.WriteJSON(map[string]any{"type": "send-message", "chatId": c.ID, "body": "before logout", "clientMsgId": "before"})
	for acked := false; !acked; {
		var f frame
		if err := conn.ReadJSON(&f); err != nil {
			t.Fatalf("before logout: %v", err)
		}
		acked = f.Type == "ack"
	}
	open, err := cellWebSockets(cs.Address)
	if err != nil {
		t.Fatal(err)
	}
	if st, body := s.on("sockend", "POST", "/api/auth/logout", agent.AccessToken, nil, nil); st != 204 {
		t.Fatalf("logout: %d %s", st, body)
	}
	if st, _ := s.on("sockend", "GET", "/api/auth/me", agent.AccessToken, nil, nil); st != 401 {
		t.Fatalf("the ended session's token still works over REST: %d", st)
	}
	// The client does not read (so never answers the close frame) and keeps writing.
	for i := 0; i < 5; i++ {
		time.Sleep(300 * time.Millisecond)
		if err := conn.WriteJSON(map[string]any{"type": "send-message", "chatId": c.ID, "body": "after logout", "clientMsgId": fmt.Sprint("after-", i)}); err != nil {
			break // the cell closed the socket: good
		}
	}
	time.Sleep(time.Second)
	var h struct {
		Messages []struct {
			ClientMsgID string `json:"clientMsgId"`
		} `json:"messages"`
	}
	if st, body := s.on("sockend", "GET", "/api/chats/"+c.ID+"/messages?since=0&limit=100", admin.AccessToken, nil, &h); st != 200 {
		t.Fatalf("history: %d %s", st, body)
	}
	var after []string
	for _, m := range h.Messages {
		if m.ClientMsgID != "first" && m.ClientMsgID != "before" {
			after = append(after, m.ClientMsgID)
		}
	}
	if len(after) > 0 {
		t.Errorf("frames sent on the socket of an ended session were executed: stored %v", after)
	}
	if now, err := cellWebSockets(cs.Address); err != nil || now != open-1 {
		t.Errorf("%d sockets open %v after the logout, want %d: the ended session's socket is still open (%v)", now, 2500*time.Millisecond, open-1, err)
	}
}
