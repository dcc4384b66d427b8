package web_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
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

// lostReplyProxy is a MongoDB wire-protocol proxy on loopback in front of the test's real
// FerretDB. When armed, it forwards the next insert into the collection it names and drops the
// server's reply to it: the database commits the insert while the driver times out, the failure
// a loaded database produces (the driver's deadline passes while the server is still working).
type lostReplyProxy struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	armed    string         // collection whose next insert loses its reply; "" for none
	swallow  map[int32]bool // requestIDs whose replies are dropped
	dropped  int            // replies dropped so far
	conns    []net.Conn
}

// startLostReplyProxy listens on a free loopback port and forwards to upstream (host:port).
func startLostReplyProxy(t *testing.T, upstream string) *lostReplyProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &lostReplyProxy{ln: ln, upstream: upstream, swallow: map[int32]bool{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	return p
}

// arm makes the next insert into collection lose its reply.
func (p *lostReplyProxy) arm(collection string) {
	p.mu.Lock()
	p.armed = collection
	p.mu.Unlock()
}

// droppedReplies returns how many replies were dropped.
func (p *lostReplyProxy) droppedReplies() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *lostReplyProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go p.pipe(c, up, true)
		go p.pipe(up, c, false)
	}
}

// pipe copies whole wire messages (16-byte header: length, requestID, responseTo, opCode) from
// src to dst, inspecting requests (toServer) and dropping swallowed replies.
func (p *lostReplyProxy) pipe(src, dst net.Conn, toServer bool) {
	defer src.Close()
	defer dst.Close()
	for {
		var hdr [16]byte
		if _, err := io.ReadFull(src, hdr[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if n < 16 || n > 48<<20 {
			return
		}
		body := make([]byte, n-16)
		if _, err := io.ReadFull(src, body); err != nil {
			return
		}
		requestID := int32(binary.LittleEndian.Uint32(hdr[4:8]))
		responseTo := int32(binary.LittleEndian.Uint32(hdr[8:12]))
		p.mu.Lock()
		drop := false
		if toServer && p.armed != "" && isInsertInto(body, p.armed) {
			p.swallow[requestID], p.armed = true, ""
		}
		if !toServer && p.swallow[responseTo] {
			delete(p.swallow, responseTo)
			p.dropped++
			drop = true
		}
		p.mu.Unlock()
		if drop {
			continue
		}
		if _, err := dst.Write(append(hdr[:], body...)); err != nil {
			return
		}
	}
}

// isInsertInto reports whether an OP_MSG body (flags, then a kind-0 section holding the command
// document) is an insert command whose first element is {insert: collection}.
func isInsertInto(body []byte, collection string) bool {
	if len(body) < 4+1+4 || body[4] != 0 {
		return false
	}
	doc := body[5:]
	want := append(append([]byte{0x02}, "insert\x00"...), make([]byte, 4)...)
	binary.LittleEndian.PutUint32(want[len(want)-4:], uint32(len(collection)+1))
	want = append(append(want, collection...), 0)
	return len(doc) > 4 && bytes.HasPrefix(doc[4:], want)
}

// startGapCell starts a cell whose database connection goes through a lostReplyProxy (with a
// 1.5 s operation timeout), opens a chat, has agent-1 accept it and follow it on a socket.
func startGapCell(t *testing.T) (tc *testCell, proxy *lostReplyProxy, visitorTok, agentTok string, chat cell.Chat, agent *websocket.Conn) {
	t.Helper()
	u, err := url.Parse(mongoURI)
	if err != nil {
		t.Fatal(err)
	}
	proxy = startLostReplyProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	q := u.Query()
	q.Set("timeoutMS", "1500")
	u.RawQuery = q.Encode()
	tc = startCell(t, func(c *cell.Config) { c.MongoURI = u.String() })
	visitorTok, chat = tc.newVisitorChat("hello")
	agentTok = tc.token(auth.TypeAccess, "agent-1", cell.RoleAgent)
	if st := tc.do("POST", "/api/chat/"+chat.ID+"/accept", agentTok, nil, nil); st != 200 {
		t.Fatalf("accept: %d", st)
	}
	agent, _ = tc.dial(t, agentTok, "http://acme.localhost:8080")
	send(t, agent, map[string]any{"type": "join-chat", "chatId": chat.ID})
	if f := next(t, agent, "joined"); f.LastSeq != 1 {
		t.Fatalf("joined at lastSeq %d, want 1", f.LastSeq)
	}
	return tc, proxy, visitorTok, agentTok, chat, agent
}

// TestLiveStreamHasNoGapWhenAnInsertAnswerIsLost holds the live stream gapless when the database
// stores a message but its answer never reaches the cell (the full-size oracle found 124 such
// gaps under load: the next message was published while the lost one never was). The agent's
// socket must receive the lost message, then the next one, each once and in seq order; the
// sender's retry with the same clientMsgId returns the stored message without a second frame.
func TestLiveStreamHasNoGapWhenAnInsertAnswerIsLost(t *testing.T) {
	tc, proxy, visitorTok, _, chat, agent := startGapCell(t)

	proxy.arm("messages")
	lost := map[string]string{"chatId": chat.ID, "body": "lost answer", "clientMsgId": "lost-1"}
	if st := tc.do("POST", "/api/messages", visitorTok, lost, nil); st < 500 {
		t.Fatalf("send with a lost answer: status %d, want a 5xx (the cell cannot know it was stored)", st)
	}
	if proxy.droppedReplies() != 1 {
		t.Fatalf("the proxy dropped %d replies, want 1", proxy.droppedReplies())
	}
	// Nothing else is sent: the flush tick alone must publish the stored message.
	if f := nextMessage(t, agent); f.Seq != 2 || f.Body != "lost answer" {
		t.Fatalf("after the lost answer the agent got seq %d %q, want seq 2 %q", f.Seq, f.Body, "lost answer")
	}
	var m cell.Message
	if st := tc.do("POST", "/api/messages", visitorTok, map[string]string{"chatId": chat.ID, "body": "next", "clientMsgId": "next-1"}, &m); st != 201 || m.Seq != 3 {
		t.Fatalf("next send: status %d seq %d, want 201 and seq 3", st, m.Seq)
	}
	if st := tc.do("POST", "/api/messages", visitorTok, lost, &m); st != 200 || m.Seq != 2 {
		t.Fatalf("retry of the lost send: status %d seq %d, want 200 (replay) and seq 2", st, m.Seq)
	}
	if f := nextMessage(t, agent); f.Seq != 3 {
		t.Fatalf("agent got seq %d, want 3", f.Seq)
	}
	// The replay publishes nothing: no further message frame arrives.
	agent.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
	for {
		_, data, err := agent.ReadMessage()
		if err != nil {
			break
		}
		if bytes.Contains(data, []byte(`"type":"message"`)) {
			t.Fatalf("a frame after the replay: %s", data)
		}
	}
}

// TestLiveStreamCatchesUpBeforeTheNextMessage covers the other path: the sender's next message
// arrives before the flush tick, so the append itself publishes the stored seq first.
func TestLiveStreamCatchesUpBeforeTheNextMessage(t *testing.T) {
	tc, proxy, visitorTok, agentTok, chat, agent := startGapCell(t)
	// Two senders: the agent's send loses its answer while the visitor's waits behind the lock.
	proxy.arm("messages")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tc.do("POST", "/api/messages", agentTok, map[string]string{"chatId": chat.ID, "body": "a", "clientMsgId": "a-1"}, nil)
	}()
	time.Sleep(200 * time.Millisecond) // the agent's insert is in flight and holds the chat
	var m cell.Message
	st := tc.do("POST", "/api/messages", visitorTok, map[string]string{"chatId": chat.ID, "body": "b", "clientMsgId": "b-1"}, &m)
	wg.Wait()
	if st != 201 || m.Seq != 3 {
		t.Fatalf("visitor send: status %d seq %d, want 201 and seq 3", st, m.Seq)
	}
	var got []int64
	for len(got) < 2 {
		got = append(got, nextMessage(t, agent).Seq)
	}
	if fmt.Sprint(got) != "[2 3]" {
		t.Fatalf("agent received seqs %v, want [2 3]", got)
	}
}

// nextMessage reads frames until a "message" frame arrives (within 5 s).
func nextMessage(t *testing.T, c *websocket.Conn) wsFrame {
	t.Helper()
	return next(t, c, "message")
}

// TestRetriesFindOldAndRecentMessages: a retry of a message sent moments ago is found among the
// newest seqs by point reads, one of a message far back by the store's scan; both answer the
// stored message (200) and store nothing new.
func TestRetriesFindOldAndRecentMessages(t *testing.T) {
	tc := startCell(t, nil)
	visitor, chat := tc.newVisitorChat("first")
	for i := 1; i <= 60; i++ {
		if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "body": fmt.Sprint("m", i), "clientMsgId": fmt.Sprint("r-", i)}, nil); st != 201 {
			t.Fatalf("send %d: %d", i, st)
		}
	}
	for _, i := range []int{1, 59} { // seq 2 (outside the newest 32) and seq 60 (inside)
		var m cell.Message
		if st := tc.do("POST", "/api/messages", visitor, map[string]string{"chatId": chat.ID, "body": "changed", "clientMsgId": fmt.Sprint("r-", i)}, &m); st != 200 || m.Seq != int64(i+1) || m.Body != fmt.Sprint("m", i) {
			t.Fatalf("retry of r-%d: status %d, seq %d, body %q; want 200, seq %d, %q", i, st, m.Seq, m.Body, i+1, fmt.Sprint("m", i))
		}
	}
	var h struct {
		LastSeq int64 `json:"lastSeq"`
	}
	tc.do("GET", "/api/chats/"+chat.ID+"/messages?since=0&limit=100", visitor, nil, &h)
	if h.LastSeq != 61 {
		t.Fatalf("lastSeq %d after the retries, want 61 (nothing new stored)", h.LastSeq)
	}
}

// TestAReplicaRoutesChatsOpenedOnAnother: the open-chat directory is per process; a chat opened
// through one replica (where no agent is online) is auto-assigned by another replica (where the
// agent is connected) once that replica's directory refreshes, and never twice.
func TestAReplicaRoutesChatsOpenedOnAnother(t *testing.T) {
	tc := startCell(t, nil)
	admin := tc.adminToken()
	if st := tc.do("PUT", "/api/settings", admin, map[string]any{"routing": "auto"}, nil); st != 200 {
		t.Fatalf("settings: %d", st)
	}
	agent, _ := tc.newAgent(t, admin, "rep", nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store2, err := mongodb.Open(ctx, tc.cfg.MongoURI, tc.cfg.Database, tc.cfg.TenantID)
	if err != nil {
		t.Fatal(err)
	}
	defer store2.Close(context.Background())
	replica := service.New(tc.cfg, store2, nil, realtime.NewHub(), auth.NewAuthority(tc.cfg.TenantID, tc.cfg.SigningKey, "k1", tc.cfg.ControlPlaneKey), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	replica.AgentConnected(agent.ID)
	done := make(chan struct{})
	go func() { replica.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(500 * time.Millisecond) // the replica's first pass has read the (empty) queue
	_, chat := tc.newVisitorChat("opened on the first replica")
	var got cell.Chat
	for end := time.Now().Add(service.DirectoryRefresh + 8*time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		tc.do("GET", "/api/chats/"+chat.ID, admin, nil, &got)
		if got.Status == cell.ChatActive {
			break
		}
	}
	if got.Status != cell.ChatActive || got.AgentID != agent.ID {
		t.Fatalf("chat is %s/%q, want active with the agent online on the other replica", got.Status, got.AgentID)
	}
	assigned := 0
	for _, h := range got.History {
		if h.Type == cell.TransitionAssigned || h.Type == cell.TransitionAccepted {
			assigned++
		}
	}
	if assigned != 1 {
		t.Fatalf("%d assignments in the history, want 1: %+v", assigned, got.History)
	}
}
