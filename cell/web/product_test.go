package web_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/mongodb"
	"atende/cell/realtime"
	"atende/cell/service"

	"github.com/fasthttp/websocket"
)

// newAgent creates a real agent (so departments and capacity apply) and returns it with a token.
func (tc *testCell) newAgent(t *testing.T, admin, name string, departments []string, capacity int) (cell.User, string) {
	t.Helper()
	var created service.AgentCreated
	if st := tc.do("POST", "/api/agents", admin, map[string]any{"email": name + "@acme.test", "name": name}, &created); st != 201 {
		t.Fatalf("create agent %s: %d", name, st)
	}
	body := map[string]any{"capacity": capacity}
	if departments != nil {
		body["departments"] = departments
	}
	var u cell.User
	if st := tc.do("PATCH", "/api/agents/"+created.Agent.ID, admin, body, &u); st != 200 {
		t.Fatalf("agent routing %s: %d", name, st)
	}
	return u, tc.token(auth.TypeAccess, u.ID, cell.RoleAgent)
}

func (tc *testCell) adminToken() string {
	return tc.token(auth.TypeAccess, "admin-1", cell.RoleTenantAdmin, cell.RoleAgent)
}

// TestCapacityHoldsUnderRace races an agent of capacity 3 for 20 queued chats, through two
// service instances over the same database (two cell replicas): exactly 3 accepts win.
func TestCapacityHoldsUnderRace(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	agent, _ := tc.newAgent(t, admin, "cap", nil, 3)
	// A second replica: its own store connection, hub and service, same database.
	ctx := context.Background()
	store2, err := mongodb.Open(ctx, tc.cfg.MongoURI, tc.cfg.Database, tc.cfg.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close(ctx)
	replica := service.New(tc.cfg, store2, nil, realtime.NewHub(), auth.NewAuthority(tc.cfg.TenantID, tc.cfg.SigningKey, "k1", tc.cfg.ControlPlaneKey), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	for round := 0; round < 3; round++ {
		chats := make([]cell.Chat, 20)
		for i := range chats {
			_, chats[i] = tc.newVisitorChat(fmt.Sprint("race ", round, i))
		}
		// Write the new chats' lastSeq hints before the race. On FerretDB v1 the hint's $set is a
		// read-modify-write of the whole chat document, so a hint written by this replica while
		// the other one records an accept can undo that accept (a known cross-replica defect of
		// the hint, see the README's delivery section); this test is about capacity.
		tc.svc.FlushHints(ctx)
		p := cell.Principal{Subject: agent.ID, TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleAgent}, Name: agent.Name}
		errs := make([]error, len(chats))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, c := range chats {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				svc := tc.svc
				if i%2 == 1 {
					svc = replica
				}
				_, errs[i] = svc.Accept(ctx, p, c.ID)
			}()
		}
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch cell.ErrorCode(err) {
			case "":
				won++
			case cell.EConflict:
			default:
				t.Fatalf("round %d: accept: %v", round, err)
			}
		}
		var active []cell.Chat
		all, _ := tc.store.AllChats(ctx)
		for _, c := range all {
			if c.Status == cell.ChatActive && c.AgentID == agent.ID {
				active = append(active, c)
			}
		}
		if won != 3 || len(active) != 3 {
			t.Fatalf("round %d: %d accepts won, %d chats active for the agent; want 3 and 3 (capacity)", round, won, len(active))
		}
		// Resolving the three frees the capacity for the next round.
		for _, c := range active {
			if _, err := tc.svc.Resolve(ctx, p, c.ID); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range chats {
			_, _ = tc.svc.Resolve(ctx, cell.Principal{Subject: "admin-1", TenantID: tc.cfg.TenantID, Roles: []string{cell.RoleTenantAdmin}}, c.ID)
		}
	}
}

// TestDepartmentsScopeWhatAgentsSee: an agent sees the queue of their departments only; a
// tenant-admin sees all; a transfer to an agent moves the chat, stores the note as a private
// note, and the previous agent's socket stops receiving the chat's events.
func TestDepartmentsScopeWhatAgentsSee(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	var sales, support cell.Department
	tc.do("POST", "/api/departments", admin, map[string]string{"name": "Sales"}, &sales)
	tc.do("POST", "/api/departments", admin, map[string]string{"name": "Support"}, &support)
	if st := tc.do("POST", "/api/departments", admin, map[string]string{"name": "sales"}, nil); st != 409 {
		t.Fatalf("duplicate department name: %d, want 409", st)
	}
	seller, sellerTok := tc.newAgent(t, admin, "seller", []string{sales.ID}, 0)
	helper, helperTok := tc.newAgent(t, admin, "helper", []string{support.ID}, 0)

	var vs service.VisitorSession
	tc.do("POST", "/api/visitor/session", "", map[string]string{"name": "Vic"}, &vs)
	var chat cell.Chat
	if st := tc.do("POST", "/api/chats", vs.VisitorToken, map[string]string{"message": "price?", "clientMsgId": "d-1", "departmentId": sales.ID}, &chat); st != 201 {
		t.Fatalf("open chat: %d", st)
	}
	queueOf := func(tok string) []string {
		var l struct{ Chats []cell.Chat }
		tc.do("GET", "/api/chat/queue", tok, nil, &l)
		var ids []string
		for _, c := range l.Chats {
			ids = append(ids, c.ID)
		}
		return ids
	}
	if q := queueOf(sellerTok); len(q) != 1 || q[0] != chat.ID {
		t.Fatalf("seller's queue %v, want the sales chat", q)
	}
	if q := queueOf(helperTok); len(q) != 0 {
		t.Fatalf("helper's queue %v, want empty (other department)", q)
	}
	if q := queueOf(admin); len(q) != 1 {
		t.Fatalf("admin's queue %v, want the chat", q)
	}
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", helperTok, nil, nil); st != 404 {
		t.Fatalf("helper accepts another department's chat: %d, want 404", st)
	}
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", sellerTok, nil, nil); st != 200 {
		t.Fatalf("seller accepts: %d", st)
	}
	sellerWS, _ := tc.dial(t, sellerTok, "")
	send(t, sellerWS, map[string]any{"type": "join-chat", "chatId": chat.ID})
	next(t, sellerWS, "joined")

	// The seller hands over to the helper (admins and the assignee may; the helper is not in
	// Sales, so only an admin may send it there).
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/transfer", sellerTok, map[string]string{"agentId": helper.ID, "note": "VIP, wants a refund"}, nil); st != 400 {
		t.Fatalf("transfer to an agent outside the department: %d, want 400", st)
	}
	var moved cell.Chat
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/transfer", admin, map[string]string{"agentId": helper.ID, "note": "VIP, wants a refund"}, &moved); st != 200 {
		t.Fatalf("admin transfer: %d", st)
	}
	if moved.AgentID != helper.ID || moved.Status != cell.ChatActive || moved.History[len(moved.History)-1].Type != cell.TransitionTransferred {
		t.Fatalf("after transfer: %+v", moved)
	}
	if f := next(t, sellerWS, "chat.left"); f.ChatID != chat.ID {
		t.Fatalf("chat.left: %+v", f)
	}
	// A new visitor message reaches the helper, not the seller.
	helperWS, _ := tc.dial(t, helperTok, "")
	send(t, helperWS, map[string]any{"type": "join-chat", "chatId": chat.ID})
	next(t, helperWS, "joined")
	tc.do("POST", "/api/messages", vs.VisitorToken, map[string]string{"chatId": chat.ID, "body": "hello?", "clientMsgId": "d-2"}, nil)
	if f := next(t, helperWS, "message"); f.Body != "hello?" {
		t.Fatalf("helper got %+v", f)
	}
	sellerWS.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		_, data, err := sellerWS.ReadMessage()
		if err != nil {
			break
		}
		if strings.Contains(string(data), "hello?") {
			t.Fatalf("the previous agent still receives the chat: %s", data)
		}
	}
	if st := tc.do("GET", "/api/chats/"+chat.ID+"/messages", sellerTok, nil, nil); st != 200 {
		t.Fatalf("the previous agent reads the history of a chat they took part in: %d, want 200", st)
	}
	if st := tc.do("POST", "/api/messages", sellerTok, map[string]string{"chatId": chat.ID, "body": "me again", "clientMsgId": "s-9"}, nil); st != 403 && st != 404 {
		t.Fatalf("the previous agent writes: %d, want 403/404", st)
	}
	// The note is in the notes stream, for staff only.
	var notes service.History
	tc.do("GET", "/api/chats/"+chat.ID+"/notes", helperTok, nil, &notes)
	if len(notes.Messages) != 1 || notes.Messages[0].Body != "VIP, wants a refund" || !notes.Messages[0].Private {
		t.Fatalf("notes: %+v", notes)
	}
	// Removing the helper from Support: a queued Support chat they follow leaves their socket
	// (chat.left) and their queue; the chat assigned to them stays theirs.
	var vs2 service.VisitorSession
	tc.do("POST", "/api/visitor/session", "", map[string]string{"name": "Val"}, &vs2)
	var supportChat cell.Chat
	if st := tc.do("POST", "/api/chats", vs2.VisitorToken, map[string]string{"message": "broken", "clientMsgId": "s-1", "departmentId": support.ID}, &supportChat); st != 201 {
		t.Fatalf("support chat: %d", st)
	}
	send(t, helperWS, map[string]any{"type": "join-chat", "chatId": supportChat.ID})
	next(t, helperWS, "joined")
	if st := tc.do("PATCH", "/api/agents/"+helper.ID, admin, map[string]any{"departments": []string{}}, nil); st != 200 {
		t.Fatalf("remove from department: %d", st)
	}
	if f := next(t, helperWS, "chat.left"); f.ChatID != supportChat.ID {
		t.Fatalf("after leaving the department: %+v, want chat.left for the support chat", f)
	}
	if q := queueOf(helperTok); len(q) != 0 {
		t.Fatalf("helper's queue after leaving Support: %v", q)
	}
	if st := tc.do("GET", "/api/chats/"+chat.ID, helperTok, nil, nil); st != 200 {
		t.Fatalf("the helper's own assigned chat after the change: %d, want 200", st)
	}
	_ = seller
}

// TestNotesNeverReachTheVisitor: a note and note-typing go to staff only; the visitor's history,
// transcript and seqs never show it.
func TestNotesNeverReachTheVisitor(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	visitorTok, chat := tc.newVisitorChat("hi")
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", admin, nil, nil); st != 200 {
		t.Fatalf("accept: %d", st)
	}
	visitorWS, _ := tc.dial(t, visitorTok, "")
	send(t, visitorWS, map[string]any{"type": "join-chat", "chatId": chat.ID})
	next(t, visitorWS, "joined")
	adminWS, _ := tc.dial(t, admin, "")
	send(t, adminWS, map[string]any{"type": "join-chat", "chatId": chat.ID})
	next(t, adminWS, "joined")
	send(t, adminWS, map[string]any{"type": "typing", "chatId": chat.ID, "state": "on", "private": true})
	send(t, adminWS, map[string]any{"type": "send-message", "chatId": chat.ID, "body": "secret note 42", "clientMsgId": "n-1", "private": true, "ref": "n"})
	if ack := next(t, adminWS, "ack"); ack.Seq != 1 {
		t.Fatalf("note ack %+v, want seq 1 of the note stream", ack)
	}
	tc.do("POST", "/api/messages", admin, map[string]any{"chatId": chat.ID, "body": "public reply", "clientMsgId": "a-1"}, nil)
	if f := next(t, visitorWS, "message"); f.Body != "public reply" || f.Seq != 2 {
		t.Fatalf("visitor got %+v, want the public reply at seq 2 (gapless, the note has its own stream)", f)
	}
	// Visitor's visible data: nothing of the note.
	var h service.History
	tc.do("GET", "/api/chats/"+chat.ID+"/messages", visitorTok, nil, &h)
	for i, m := range h.Messages {
		if m.Private || strings.Contains(m.Body, "secret note") || m.Seq != int64(i+1) {
			t.Fatalf("visitor history: %+v", h.Messages)
		}
	}
	for _, path := range []string{"/api/chats/" + chat.ID + "/transcript", "/api/chats/" + chat.ID} {
		req, _ := http.NewRequest("GET", tc.base+path, nil)
		req.Host = "acme.localhost:8080"
		req.Header.Set("Authorization", "Bearer "+visitorTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || strings.Contains(string(body), "secret note") {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if strings.HasSuffix(path, "transcript") && !strings.Contains(string(body), "public reply") {
			t.Fatalf("transcript lacks the reply: %s", body)
		}
	}
	if st := tc.do("GET", "/api/chats/"+chat.ID+"/notes", visitorTok, nil, nil); st != 403 {
		t.Fatalf("visitor reads notes: %d, want 403", st)
	}
	if st := tc.do("POST", "/api/messages", visitorTok, map[string]any{"chatId": chat.ID, "body": "x", "clientMsgId": "v-n", "private": true}, nil); st != 403 {
		t.Fatalf("visitor writes a note: %d, want 403", st)
	}
	visitorWS.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		_, data, err := visitorWS.ReadMessage()
		if err != nil {
			break
		}
		if strings.Contains(string(data), "secret note") || strings.Contains(string(data), `"private":true`) {
			t.Fatalf("the visitor's socket received %s", data)
		}
	}
}

// TestLifecycleReopenAbandonAndTimers covers reopen within the window, abandonment by the
// visitor and by timeout, and auto-resolve after inactivity (with a moved clock).
func TestLifecycleReopenAbandonAndTimers(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	visitorTok, chat := tc.newVisitorChat("hi")
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/resolve", visitorTok, nil, &chat); st != 200 || chat.Status != cell.ChatAbandoned {
		t.Fatalf("visitor leaves a queued chat: %d %s, want abandoned", st, chat.Status)
	}
	// Writing again within the window reopens the same chat.
	if st := tc.do("POST", "/api/messages", visitorTok, map[string]string{"chatId": chat.ID, "body": "still there?", "clientMsgId": "v-2"}, nil); st != 201 {
		t.Fatalf("message after abandon: %d", st)
	}
	var got cell.Chat
	tc.do("GET", "/api/chats/"+chat.ID, admin, nil, &got)
	if got.Status != cell.ChatQueued || got.History[len(got.History)-1].Type != cell.TransitionReopened {
		t.Fatalf("after writing again: %s %+v", got.Status, got.History)
	}
	tc.do("POST", "/api/chat/"+chat.ID+"/accept", admin, nil, nil)
	tc.do("POST", "/api/chat/"+chat.ID+"/resolve", admin, nil, nil)
	// After the window, a new chat.
	base := time.Now().UTC()
	tc.svc.SetClock(func() time.Time { return base.Add(31 * time.Minute) })
	if st := tc.do("POST", "/api/messages", visitorTok, map[string]string{"chatId": chat.ID, "body": "later", "clientMsgId": "v-3"}, nil); st != 409 {
		t.Fatalf("message after the reopen window: %d, want 409", st)
	}
	var fresh cell.Chat
	if st := tc.do("POST", "/api/chats", visitorTok, map[string]string{"message": "new question", "clientMsgId": "v-4"}, &fresh); st != 201 || fresh.ID == chat.ID {
		t.Fatalf("new chat after the window: %d %s", st, fresh.ID)
	}
	// Timers: an active chat silent for 61 minutes is resolved; a queued one waiting 31 is
	// abandoned.
	_, active := tc.newVisitorChat("a")
	tc.do("POST", "/api/chat/"+active.ID+"/accept", admin, nil, nil)
	_, queued := tc.newVisitorChat("q")
	tc.svc.FlushHints(context.Background())
	tc.svc.SetClock(func() time.Time { return base.Add(31*time.Minute + 32*time.Minute) })
	tc.svc.SweepTimers(context.Background())
	tc.do("GET", "/api/chats/"+queued.ID, admin, nil, &got)
	if got.Status != cell.ChatAbandoned || got.History[len(got.History)-1].Actor.Role != "system" {
		t.Fatalf("queued chat after 32 min: %s", got.Status)
	}
	tc.do("GET", "/api/chats/"+active.ID, admin, nil, &got)
	if got.Status != cell.ChatActive {
		t.Fatalf("active chat after 32 min: %s, want still active", got.Status)
	}
	tc.svc.SetClock(func() time.Time { return base.Add(31*time.Minute + 62*time.Minute) })
	tc.svc.SweepTimers(context.Background())
	tc.do("GET", "/api/chats/"+active.ID, admin, nil, &got)
	if got.Status != cell.ChatResolved {
		t.Fatalf("active chat after 62 silent minutes: %s, want resolved", got.Status)
	}
}

// TestAutoRoutingAssignsTheLeastBusyOnlineAgent: with routing auto, queued chats go to online
// agents, least busy first, never past capacity; an offline agent gets none.
func TestAutoRoutingAssignsTheLeastBusyOnlineAgent(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	if st := tc.do("PUT", "/api/settings", admin, map[string]any{"routing": "auto", "defaultCapacity": 2}, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	var av service.Availability
	if st := tc.do("GET", "/api/availability", "", nil, &av); st != 200 || av.Online || !av.AcceptsChats || av.AgentsOnline != 0 {
		t.Fatalf("anonymous availability with nobody online: %d %+v, want 200 offline (chats still accepted)", st, av)
	}
	a, aTok := tc.newAgent(t, admin, "ann", nil, 0)
	b, bTok := tc.newAgent(t, admin, "bob", nil, 0)
	_, _ = tc.newAgent(t, admin, "off", nil, 0) // never connects: offline
	aWS, _ := tc.dial(t, aTok, "")
	bWS, _ := tc.dial(t, bTok, "")
	_, _ = aWS, bWS
	for end := time.Now().Add(5 * time.Second); av.AgentsOnline != 2 && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		tc.do("GET", "/api/availability", "", nil, &av)
	}
	if !av.Online || av.AgentsOnline != 2 {
		t.Fatalf("availability with two agents connected: %+v", av)
	}
	ids := make([]string, 5)
	for i := range ids {
		_, c := tc.newVisitorChat(fmt.Sprint("auto ", i))
		ids[i] = c.ID
	}
	deadline := time.Now().Add(10 * time.Second)
	var counts map[string]int
	for time.Now().Before(deadline) {
		counts = map[string]int{}
		for _, id := range ids {
			var c cell.Chat
			tc.do("GET", "/api/chats/"+id, admin, nil, &c)
			if c.Status == cell.ChatActive {
				counts[c.AgentID]++
			}
		}
		if counts[a.ID]+counts[b.ID] == 4 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if counts[a.ID] != 2 || counts[b.ID] != 2 || len(counts) != 2 {
		t.Fatalf("assignments %v, want 2 each for the two online agents (capacity 2), none for the offline one", counts)
	}
	var pos service.QueueStatus
	var last string
	for _, id := range ids {
		var c cell.Chat
		tc.do("GET", "/api/chats/"+id, admin, nil, &c)
		if c.Status == cell.ChatQueued {
			last = id
		}
	}
	if st := tc.do("GET", "/api/chats/"+last+"/queue-position", admin, nil, &pos); st != 200 || pos.Position != 1 {
		t.Fatalf("queue position of the chat still waiting: %d %+v", st, pos)
	}
}

// TestReportsAreExact builds chats at known times and compares the report with figures
// computed here, independently, from the same timeline.
func TestReportsAreExact(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	if st := tc.do("PUT", "/api/settings", admin, map[string]any{"sla": map[string]int{"firstResponseSeconds": 60, "resolutionSeconds": 600}}, nil); st != 200 {
		t.Fatal("settings")
	}
	agent, agentTok := tc.newAgent(t, admin, "rep", nil, 20)
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	var clock time.Time
	var mu sync.Mutex
	tc.svc.SetClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	at := func(d time.Duration) { mu.Lock(); clock = base.Add(d); mu.Unlock() }
	type plan struct {
		wait, frt, handle int // seconds; frt from creation; handle from accept; -1: not done
		csat              int
		abandon           bool
	}
	plans := []plan{
		{wait: 10, frt: 30, handle: 300, csat: 5}, {wait: 20, frt: 50, handle: 200, csat: 4},
		{wait: 40, frt: 90, handle: 700, csat: 2}, {wait: 5, frt: 8, handle: 100, csat: 0},
		{wait: 70, frt: 120, handle: 60, csat: 3}, {abandon: true}, {abandon: true},
		{wait: 15, frt: 25, handle: -1},
	}
	var waits, frts, handles, csats []float64
	frtHit, frtMiss, resHit, resMiss := 0, 0, 0, 0
	for i, p := range plans {
		start := time.Duration(i) * time.Hour
		at(start)
		visitorTok, chat := tc.newVisitorChat("q")
		if p.abandon {
			at(start + 30*time.Second)
			tc.do("POST", "/api/chat/"+chat.ID+"/resolve", visitorTok, nil, nil)
			// Abandoned chats count in volume and abandonment, not in the SLAs.
			continue
		}
		at(start + time.Duration(p.wait)*time.Second)
		if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", agentTok, nil, nil); st != 200 {
			t.Fatalf("accept %d", st)
		}
		at(start + time.Duration(p.frt)*time.Second)
		tc.do("POST", "/api/messages", agentTok, map[string]string{"chatId": chat.ID, "body": "hello", "clientMsgId": fmt.Sprint("r-", i)}, nil)
		waits, frts = append(waits, float64(p.wait)), append(frts, float64(p.frt))
		if p.frt <= 60 {
			frtHit++
		} else {
			frtMiss++
		}
		if p.handle < 0 {
			continue
		}
		at(start + time.Duration(p.wait+p.handle)*time.Second)
		tc.do("POST", "/api/chat/"+chat.ID+"/resolve", agentTok, nil, nil)
		handles = append(handles, float64(p.handle))
		if p.wait+p.handle <= 600 {
			resHit++
		} else {
			resMiss++
		}
		if p.csat > 0 {
			if st := tc.do("POST", "/api/chats/"+chat.ID+"/csat", visitorTok, map[string]any{"score": p.csat}, nil); st != 200 {
				t.Fatalf("csat %d", st)
			}
			csats = append(csats, float64(p.csat))
		}
	}
	at(time.Duration(len(plans)) * time.Hour) // "now" for open chats: the open one is past 600 s
	resMiss++
	var r service.Report
	if st := tc.do("GET", "/api/reports/summary?from="+base.Format(time.RFC3339)+"&to="+base.Add(24*time.Hour).Format(time.RFC3339), admin, nil, &r); st != 200 {
		t.Fatalf("report: %d", st)
	}
	expect := func(name string, got service.Stat, values []float64) {
		t.Helper()
		v := append([]float64(nil), values...)
		sort.Float64s(v)
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		p90 := v[int(math.Ceil(0.9*float64(len(v))))-1]
		want := service.Stat{Count: len(v), Avg: math.Round(sum/float64(len(v))*1000) / 1000, Median: med, P90: p90}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	tot := r.Total
	if tot.Chats != 8 || tot.Abandoned != 2 || tot.Resolved != 5 || tot.Open != 1 || tot.AbandonmentRate != 0.25 {
		t.Errorf("counts: %+v", tot)
	}
	expect("wait", tot.Wait, waits)
	expect("first response", tot.FirstResponse, frts)
	expect("handling", tot.Handling, handles)
	expect("csat", tot.CSAT, csats)
	if tot.SLAFirstResp != (service.SLACount{Hit: frtHit, Miss: frtMiss}) || tot.SLAResolution != (service.SLACount{Hit: resHit, Miss: resMiss}) {
		t.Errorf("sla: first response %+v want %d/%d; resolution %+v want %d/%d", tot.SLAFirstResp, frtHit, frtMiss, tot.SLAResolution, resHit, resMiss)
	}
	if byAgent := r.ByAgent[agent.ID]; byAgent.Chats != 6 || byAgent.Handling != tot.Handling {
		t.Errorf("by agent: %+v", byAgent)
	}
	if st := tc.do("GET", "/api/reports/summary", agentTok, nil, nil); st != 403 {
		t.Errorf("an agent reads reports: %d, want 403", st)
	}
	if st := tc.do("GET", "/api/reports/summary?from=2026-11-03T00:00:00Z&to=2026-11-02T00:00:00Z", admin, nil, nil); st != 400 {
		t.Errorf("inverted range: %d, want 400", st)
	}
}

// TestSettingsValidationChangesNothing: an invalid settings document is refused with 400 and the
// stored settings stay as they were; the webhook secret is never read back.
func TestSettingsValidationChangesNothing(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	good := map[string]any{"routing": "manual", "webhook": map[string]any{"url": "https://hooks.example.test/x", "secret": "0123456789abcdef0123"},
		"businessHours": map[string]any{"enabled": true, "timeZone": "America/Sao_Paulo", "days": map[string][]string{"mon": {"09:00-18:00"}}}}
	if st := tc.do("PUT", "/api/settings", admin, good, nil); st != 200 {
		t.Fatalf("good settings: %d", st)
	}
	for _, bad := range []map[string]any{
		{"routing": "random"}, {"defaultCapacity": 500}, {"businessHours": map[string]any{"timeZone": "Mars/Olympus"}},
		{"businessHours": map[string]any{"days": map[string][]string{"mon": {"18:00-09:00"}}}},
		{"webhook": map[string]any{"url": "ftp://x", "secret": "0123456789abcdef"}}, {"webhook": map[string]any{"events": []string{"chat.exploded"}}},
	} {
		var e apiError
		if st := tc.do("PUT", "/api/settings", admin, bad, &e); st != 400 || e.Error.Code != cell.EInvalid {
			t.Errorf("bad settings %v: %d %+v, want 400 invalid", bad, st, e)
		}
	}
	var st cell.Settings
	tc.do("GET", "/api/settings", admin, nil, &st)
	if st.Webhook.URL != "https://hooks.example.test/x" || st.Webhook.Secret != "********" || st.BusinessHours.TimeZone != "America/Sao_Paulo" {
		t.Fatalf("stored settings changed or leak the secret: %+v", st)
	}
	raw, _ := json.Marshal(st)
	if strings.Contains(string(raw), "0123456789abcdef0123") {
		t.Fatal("the webhook secret was read back")
	}
	_ = websocket.TextMessage
}

// TestPlanBudgetsHoldForTheWholeTenant: the plan's tenant-wide budgets refuse requests beyond
// them whatever address they come from (X-Forwarded-For rotated on each), and the plan's cap on
// open chats answers 503 unavailable.
func TestPlanBudgetsHoldForTheWholeTenant(t *testing.T) {
	tc := startCell(t, func(c *cell.Config) {
		c.TenantRates = cell.TenantRates{Messages: 60}
		c.MaxOpenChats = 3
	})
	visitorTok, chat := tc.newVisitorChat("hi") // 1 message
	ok, limited := 0, 0
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", tc.base+"/api/messages", strings.NewReader(fmt.Sprintf(`{"chatId":%q,"body":"x","clientMsgId":"b-%d"}`, chat.ID, i)))
		req.Host = "acme.localhost:8080"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+visitorTok)
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		var e apiError
		switch st := doJSON(t, req, &e); {
		case st == 201:
			ok++
		case st == 429 && e.Error.Code == cell.ERateLimited:
			limited++
		default:
			t.Fatalf("message %d: %d %+v", i, st, e)
		}
	}
	// Burst of 10 seconds' worth (10), less the first message; a few may refill meanwhile.
	if ok < 9 || ok > 12 || limited != 20-ok {
		t.Fatalf("%d sent, %d rate limited; want about 9 sent (60/min budget, burst 10)", ok, limited)
	}
	tc.newVisitorChat("two")
	tc.newVisitorChat("three")
	var vs service.VisitorSession
	tc.do("POST", "/api/visitor/session", "", map[string]string{"name": "Four"}, &vs)
	var e apiError
	if st := tc.do("POST", "/api/chats", vs.VisitorToken, map[string]string{"message": "four", "clientMsgId": "f-1"}, &e); st != 503 || e.Error.Code != cell.EUnavailable {
		t.Fatalf("fourth open chat on a plan of 3: %d %+v, want 503 unavailable", st, e)
	}
}

// TestWebhooksDeliverChatEventsSigned: with a webhook configured, the chat's lifecycle reaches a
// real receiver as signed events (HMAC checked here independently of the package), message
// events never include notes, a failing first attempt is retried with the same event id, and the
// delivery log shows the attempts.
func TestWebhooksDeliverChatEventsSigned(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	const secret = "whsec-0123456789abcdef"
	var mu sync.Mutex
	var got []map[string]any
	seen := map[string]int{}
	failFirst := true
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get("X-Atende-Timestamp") + "." + string(body)))
		if r.Header.Get("X-Atende-Signature") != "sha256="+hex.EncodeToString(mac.Sum(nil)) {
			t.Errorf("bad signature on %s", body)
		}
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("X-Atende-Event-Id")
		seen[id]++
		if failFirst {
			failFirst = false
			w.WriteHeader(500)
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		got = append(got, ev)
		w.WriteHeader(204)
	}))
	defer recv.Close()
	if st := tc.do("PUT", "/api/settings", admin, map[string]any{"webhook": map[string]any{"url": recv.URL + "/hook", "secret": secret}}, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	visitorTok, chat := tc.newVisitorChat("hello webhook")
	tc.do("POST", "/api/chat/"+chat.ID+"/accept", admin, nil, nil)
	tc.do("POST", "/api/messages", admin, map[string]any{"chatId": chat.ID, "body": "internal only", "clientMsgId": "n1", "private": true}, nil)
	tc.do("POST", "/api/messages", admin, map[string]any{"chatId": chat.ID, "body": "public answer", "clientMsgId": "a1"}, nil)
	tc.do("POST", "/api/chat/"+chat.ID+"/resolve", visitorTok, nil, nil)
	want := []string{"chat.created", "message.created", "chat.accepted", "message.created", "chat.resolved"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	types := map[string]int{}
	for _, ev := range got {
		types[fmt.Sprint(ev["type"])]++
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), "internal only") {
			t.Fatalf("a note reached the webhook: %s", raw)
		}
	}
	if types["chat.created"] != 1 || types["chat.accepted"] != 1 || types["message.created"] != 2 || types["chat.resolved"] != 1 {
		raw := map[string]any{}
		tc.do("GET", "/api/webhooks/deliveries", admin, nil, &raw)
		t.Fatalf("delivered %v, want %v (log %v)", types, want, raw)
	}
	retried := 0
	for _, n := range seen {
		if n > 1 {
			retried++
		}
	}
	if retried != 1 {
		t.Fatalf("event ids seen more than once: %d, want exactly the one that failed first (%v)", retried, seen)
	}
	mu.Unlock() // the receiver may still be answering the last attempt; its log entry follows
	defer mu.Lock()
	var log struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := tc.do("GET", "/api/webhooks/deliveries", admin, nil, &log)
		if st == 200 && len(log.Deliveries) == len(want)+1 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("delivery log: %d, %d entries, want %d (one failed attempt, then one per event)", st, len(log.Deliveries), len(want)+1)
		}
	}
}
