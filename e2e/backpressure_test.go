package e2e

// Back-pressure on the realtime path, end to end: a client that stops reading is disconnected
// instead of having its frames buffered without bound, while a client that reads keeps every
// frame, including a resume longer than the cell's per-client outbox.

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// bpFill sends n messages to chatID with POST /api/messages from the given senders (token and
// source address each), round-robin, four at a time; body(i) is the i-th body. It returns how long
// it took.
func bpFill(t *testing.T, s *stack, key, chatID string, n int, tokens []string, ips []net.IP, body func(i int) string) time.Duration {
	t.Helper()
	o := &oracle{s: s, key: key, edgeAddr: strings.TrimPrefix(s.edge, "http://")}
	clients := make([]*http.Client, len(ips))
	for i, ip := range ips {
		clients[i] = oracleHTTPFrom(ip)
	}
	start := time.Now()
	oracleParallel(t, n, 4, func(i int) error {
		k := i % len(tokens)
		st, b, err := o.edgeRequest(clients[k], "POST", "/api/messages", tokens[k], map[string]string{"chatId": chatID, "body": body(i), "clientMsgId": fmt.Sprint("fill-", i)}, nil)
		if err != nil || st != 201 {
			return fmt.Errorf("message %d: %d %s %v", i, st, b, err)
		}
		return nil
	})
	return time.Since(start)
}

// cellWebSockets reads the cell's open-socket gauge from its /metrics, on the cell's own address
// (the cell never serves /metrics on a tenant host).
func cellWebSockets(addr string) (int, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("metrics: %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "atende_cell_websockets "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, errors.New("metrics: no atende_cell_websockets")
}

// slowDial opens a WebSocket through the edge whose socket receive buffer is as small as the
// kernel allows, for a client that will stop reading.
func slowDial(t *testing.T, s *stack, key, token string) *websocket.Conn {
	t.Helper()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if st, body := s.on(key, "POST", "/api/ws-ticket", token, nil, &tk); st != 200 {
		t.Fatalf("ws ticket: %d %s", st, body)
	}
	nd := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	edgeAddr := strings.TrimPrefix(s.edge, "http://")
	d := websocket.Dialer{NetDial: func(network, _ string) (net.Conn, error) { return nd.Dial(network, edgeAddr) }, HandshakeTimeout: 10 * time.Second, ReadBufferSize: 4096}
	conn, _, err := d.Dial("ws://"+s.host(key)+"/ws?ticket="+tk.Ticket, http.Header{"Origin": {"http://" + s.host(key)}})
	if err != nil {
		t.Fatalf("slow dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// pingedDial opens a WebSocket through the edge like stack.dial, whose client counts the server's
// pings (answering each with a pong, as browsers do) and records every frame; it sends nothing
// by itself.
func pingedDial(t *testing.T, s *stack, key, token string) (*wsClient, *atomic.Int64) {
	t.Helper()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if st, body := s.on(key, "POST", "/api/ws-ticket", token, nil, &tk); st != 200 {
		t.Fatalf("ws ticket: %d %s", st, body)
	}
	edgeAddr := strings.TrimPrefix(s.edge, "http://")
	d := websocket.Dialer{NetDial: func(network, _ string) (net.Conn, error) { return net.Dial(network, edgeAddr) }, HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial("ws://"+s.host(key)+"/ws?ticket="+tk.Ticket, http.Header{"Origin": {"http://" + s.host(key)}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	pings := &atomic.Int64{}
	conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
	})
	c := &wsClient{t: t, conn: conn, frames: make(chan frame, 10000)}
	go func() {
		defer close(c.frames)
		for {
			var f frame
			if err := conn.ReadJSON(&f); err != nil {
				return
			}
			c.frames <- f
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c, pings
}

// resumeAll sends join-chat and then `resumes` resume frames since 0 for chatID on ws, and
// collects message frames until it has seen that many resumed frames with complete true,
// continuing incomplete resumes. It returns the seqs received per resume round and whether the
// socket closed first.
func resumeAll(t *testing.T, ws *wsClient, chatID string, resumes int, timeout time.Duration) (seqs []int64, closed bool) {
	t.Helper()
	ws.send(map[string]any{"type": "join-chat", "chatId": chatID})
	ws.next("joined", 10*time.Second)
	for i := 0; i < resumes; i++ {
		ws.send(map[string]any{"type": "resume", "chatId": chatID, "since": 0})
	}
	deadline := time.After(timeout)
	done := 0
	var last int64
	for done < resumes {
		select {
		case f, ok := <-ws.frames:
			if !ok {
				return seqs, true
			}
			switch f.Type {
			case "message":
				seqs = append(seqs, f.Seq)
				last = f.Seq
			case "resumed":
				if f.Complete != nil && *f.Complete {
					done++
				} else {
					ws.send(map[string]any{"type": "resume", "chatId": chatID, "since": last})
				}
			case "error":
				t.Fatalf("error frame %+v", f)
			}
		case <-deadline:
			t.Fatalf("%d of %d resumes complete after %v (%d messages)", done, resumes, timeout, len(seqs))
		}
	}
	return seqs, false
}

// TestRealtimeBackPressure proves the realtime path bounds what it buffers per client and keeps
// live clients connected: a resume longer than the cell's outbox reaches a client that reads, in
// full; a burst of resumes reaches a reading client in full; a client that stops reading is
// disconnected (outbox overflow or write deadline, within seconds) instead of having those
// frames kept for it, and loses nothing once it reconnects; and an idle client that answers the
// server's pings outlives the read deadline.
func TestRealtimeBackPressure(t *testing.T) {
	s := startStack(t, "ATENDE_SEED_DEV=false")
	tn, _ := s.createTenant("backp")
	admin := s.login("backp", tn.Admin.Email, tn.Admin.Password)
	if st, body := s.on("backp", "POST", "/api/agents", admin.AccessToken, map[string]string{"email": "agent@backp.test", "name": "Agent", "password": "agent-password"}, nil); st != 201 {
		t.Fatalf("create agent: %d %s", st, body)
	}
	agent := s.login("backp", "agent@backp.test", "agent-password")
	s.dial("backp", agent.AccessToken) // an agent online, so visitors may open chats
	var cs struct {
		Address string `json:"address"`
	}
	if st, body := s.cp("GET", "/api/tenants/"+tn.ID+"/cell", nil, &cs); st != 200 || cs.Address == "" {
		t.Fatalf("cell status: %d %s", st, body)
	}
	// A console left open and idle: it reads (and answers pings) but sends nothing. Checked last.
	idle, pings := pingedDial(t, s, "backp", agent.AccessToken)
	idleSince := time.Now()

	// Two chats: "long" with more messages than a client's outbox holds, "big" with ~30 KB bodies.
	type filled struct {
		id, token string
		n         int
	}
	open := func(first string, n int, body func(i int) string) filled {
		vt, c := s.visitor("backp", first)
		if st, b := s.on("backp", "POST", "/api/chat/"+c.ID+"/accept", agent.AccessToken, nil, nil); st != 200 {
			t.Fatalf("accept: %d %s", st, b)
		}
		took := bpFill(t, s, "backp", c.ID, n, []string{vt, agent.AccessToken}, []net.IP{net.IPv4(127, 3, 0, 1), net.IPv4(127, 3, 0, 2)}, body)
		t.Logf("%d messages stored in %v", n, took.Round(time.Millisecond))
		return filled{id: c.ID, token: vt, n: n + 1} // + the first message
	}
	const outbox = 256 // realtime.OutboxSize
	long := open("a long chat", outbox+64, func(i int) string { return fmt.Sprint("short message ", i) })
	big := open("a chat with big messages", 100, func(i int) string { return fmt.Sprintf("%04d ", i) + strings.Repeat("€", 9990) })

	t.Run("a resume longer than the outbox reaches a reading client in full", func(t *testing.T) {
		ws := s.dial("backp", agent.AccessToken)
		seqs, closed := resumeAll(t, ws, long.id, 1, 60*time.Second)
		if closed {
			t.Fatalf("the socket was closed after %d of %d resumed messages: the resume queues more frames at once than the client's outbox holds (%d), so the cell drops a client that reads as a slow consumer", len(seqs), long.n, outbox)
		}
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Fatalf("resumed message %d has seq %d", i, seq)
			}
		}
		if len(seqs) != long.n {
			t.Fatalf("resume returned %d messages, want %d", len(seqs), long.n)
		}
	})

	const rounds = 6 // resumes of the big chat: 6 × 101 frames of ~30 KB, ~18 MB
	t.Run("a reading client receives a burst of resumes in full", func(t *testing.T) {
		ws := s.dial("backp", agent.AccessToken)
		seqs, closed := resumeAll(t, ws, big.id, rounds, 120*time.Second)
		if closed || len(seqs) != rounds*big.n {
			t.Fatalf("%d of %d frames, socket closed: %v", len(seqs), rounds*big.n, closed)
		}
	})

	t.Run("a client that stops reading is disconnected, not buffered for", func(t *testing.T) {
		before, err := cellWebSockets(cs.Address)
		if err != nil {
			t.Fatal(err)
		}
		conn := slowDial(t, s, "backp", agent.AccessToken)
		_ = conn.WriteJSON(map[string]any{"type": "join-chat", "chatId": big.id})
		for {
			var f frame
			if err := conn.ReadJSON(&f); err != nil {
				t.Fatalf("waiting for joined: %v", err)
			}
			if f.Type == "joined" {
				break
			}
		}
		open, _ := cellWebSockets(cs.Address)
		if open != before+1 {
			t.Fatalf("%d sockets open with the slow client, want %d", open, before+1)
		}
		rssBefore := rssKiB(t, cellPID(t, tn.ID))
		sent := time.Now()
		for i := 0; i < rounds; i++ {
			_ = conn.WriteJSON(map[string]any{"type": "resume", "chatId": big.id, "since": 0})
		}
		// The client reads nothing now. The cell must close the socket: once its outbox is full
		// (slow consumer) or when a write has been blocked for its write deadline (10 s).
		var dropped time.Duration
		for dropped == 0 {
			n, err := cellWebSockets(cs.Address)
			if err != nil {
				t.Fatal(err)
			}
			if n == before {
				dropped = time.Since(sent)
				break
			}
			if time.Since(sent) > 90*time.Second {
				t.Fatalf("the client that stopped reading is still connected %v later (%d sockets)", time.Since(sent).Round(time.Second), n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		rssAfter := rssKiB(t, cellPID(t, tn.ID))
		// Now read what reached the client before the cell gave up: less than it asked for, and
		// the stream ends.
		got := 0
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var end error
		for {
			_, _, err := conn.ReadMessage()
			if err != nil {
				end = err
				break
			}
			got++
		}
		var netErr net.Error
		if errors.As(end, &netErr) && netErr.Timeout() {
			t.Fatalf("the stream did not end after %d frames: the socket is still open", got)
		}
		if want := rounds * (big.n + 1); got >= want {
			t.Fatalf("the slow client received all %d frames: nothing was dropped", got)
		}
		t.Logf("slow client dropped %v after its resumes; it had received %d of %d frames (~%d MB of ~%d MB); socket ended with %v; cell RSS %d → %d MiB",
			dropped.Round(time.Millisecond), got, rounds*(big.n+1), got*30/1024, rounds*big.n*30/1024, end, rssBefore/1024, rssAfter/1024)
		// Dropped from the hub is not enough: the socket itself (its goroutines, buffers and, for
		// an agent, its presence) must go. Through a proxy, the kernel buffers on both sides of
		// the edge absorb several MB before the cell's writes block, so the cell notices a client
		// that stopped reading only when they are full, and then within its write deadline; the
		// bound here is the read deadline plus the write deadline (memory stays bounded meanwhile:
		// the outbox is 256 frames and the rest sits in kernel buffers).
		if limit := 75 * time.Second; dropped > limit {
			t.Errorf("the socket closed %v after the client stopped reading, want within %v: the cell stopped writing to it but left it open until its read deadline", dropped.Round(time.Second), limit)
		}

		// The dropped client loses nothing: a new connection resumes the whole chat.
		ws := s.dial("backp", agent.AccessToken)
		if seqs, closed := resumeAll(t, ws, big.id, 1, 60*time.Second); closed || len(seqs) != big.n {
			t.Fatalf("after reconnecting: %d of %d messages, closed %v", len(seqs), big.n, closed)
		}
	})

	// The read deadline (60 s, web.pongWait) ended the socket of the client that stopped reading
	// above; a client that keeps answering the server's pings (every 25 s) outlives it while
	// sending nothing.
	t.Run("an idle client that answers pings outlives the read deadline", func(t *testing.T) {
		const pongWait = 60 * time.Second // cell/web/ws.go
		if wait := time.Until(idleSince.Add(pongWait + 10*time.Second)); wait > 0 {
			time.Sleep(wait)
		}
		if n := pings.Load(); n < 2 {
			t.Errorf("%d server pings in %v, want at least 2 (one every 25 s)", n, time.Since(idleSince).Round(time.Second))
		}
		idle.send(map[string]any{"type": "ping", "ref": "still-there"})
		deadline := time.After(10 * time.Second)
		for {
			select {
			case f, ok := <-idle.frames:
				if !ok {
					t.Fatalf("the idle client's socket was closed after %v although it answered %d pings", time.Since(idleSince).Round(time.Second), pings.Load())
				}
				if f.Type == "pong" && f.Ref == "still-there" {
					return
				}
			case <-deadline:
				t.Fatal("no pong from the idle client's socket")
			}
		}
	})
}
