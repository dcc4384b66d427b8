package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"atende/cell/web"
)

type session struct {
	AccessToken string `json:"accessToken"`
	User        struct {
		ID string `json:"id"`
	} `json:"user"`
}

func (s *stack) login(key, email, password string) session {
	s.t.Helper()
	var out session
	if st, body := s.on(key, "POST", "/api/auth/login", "", map[string]string{"email": email, "password": password}, &out); st != 200 {
		s.t.Fatalf("login %s on %s: %d %s", email, key, st, body)
	}
	return out
}

// visitor opens a visitor session and a chat with a first message on tenant key.
func (s *stack) visitor(key, first string) (token string, c chat) {
	s.t.Helper()
	var vs struct {
		VisitorToken string `json:"visitorToken"`
	}
	if st, body := s.on(key, "POST", "/api/visitor/session", "", map[string]string{"name": "Vera"}, &vs); st != 201 {
		s.t.Fatalf("visitor session: %d %s", st, body)
	}
	if st, body := s.on(key, "POST", "/api/chats", vs.VisitorToken, map[string]string{"message": first, "clientMsgId": "first"}, &c); st != 201 {
		s.t.Fatalf("open chat: %d %s", st, body)
	}
	return vs.VisitorToken, c
}

// TestWalkingSkeleton is issue 2's end-to-end test: two tenants created through the API, and on
// acme's host (through the edge) a visitor and agents chat, race, upload, and are isolated from
// globex.
func TestWalkingSkeleton(t *testing.T) {
	s := startStack(t, "ATENDE_SEED_DEV=false", "ATENDE_CELL_PRESIGN_TTL=3s")
	acme, took := s.createTenant("acme")
	t.Logf("acme: first 200 on its host %v after the 202", took)
	globex, _ := s.createTenant("globex")

	admin := s.login("acme", acme.Admin.Email, acme.Admin.Password)
	const agents = 50
	tokens := make([]string, agents)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			email := fmt.Sprintf("agent%02d@acme.test", i)
			if st, body := s.on("acme", "POST", "/api/agents", admin.AccessToken, map[string]string{"email": email, "name": fmt.Sprint("Agent ", i), "password": "agent-password"}, nil); st != 201 {
				t.Errorf("create agent %d: %d %s", i, st, body)
				return
			}
			tokens[i] = s.login("acme", email, "agent-password").AccessToken
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	agentWS := s.dial("acme", tokens[0])
	visitorTok, c := s.visitor("acme", "Hello, I need help")
	if f := agentWS.next("chat.queued", 10*time.Second); f.Chat == nil || f.Chat.ID != c.ID {
		t.Fatalf("agent saw %+v, want chat.queued of %s", f, c.ID)
	}
	var queue struct {
		Chats []chat `json:"chats"`
	}
	s.on("acme", "GET", "/api/chat/queue", tokens[0], nil, &queue)
	if len(queue.Chats) != 1 || queue.Chats[0].ID != c.ID {
		t.Fatalf("queue: %+v", queue.Chats)
	}
	if st, body := s.on("acme", "POST", "/api/chat/"+c.ID+"/accept", tokens[0], nil, nil); st != 200 {
		t.Fatalf("accept: %d %s", st, body)
	}
	agentWS.next("chat.accepted", 10*time.Second)

	t.Run("50 concurrent accepts have exactly one winner, 20 rounds", func(t *testing.T) {
		for round := 0; round < 20; round++ {
			_, rc := s.visitor("acme", fmt.Sprint("round ", round))
			statuses := make([]int, agents)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range tokens {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					statuses[i], _ = s.on("acme", "POST", "/api/chat/"+rc.ID+"/accept", tokens[i], nil, nil)
				}()
			}
			close(start)
			wg.Wait()
			count := map[int]int{}
			for _, st := range statuses {
				count[st]++
			}
			if count[200] != 1 || count[409] != agents-1 {
				t.Fatalf("round %d: %v, want one 200 and %d × 409", round, count, agents-1)
			}
		}
	})

	t.Run("200 messages each way arrive in seq order without gaps or duplicates", func(t *testing.T) {
		visitorWS := s.dial("acme", visitorTok)
		visitorWS.send(map[string]any{"type": "join-chat", "chatId": c.ID})
		visitorWS.next("joined", 5*time.Second)
		agentWS.send(map[string]any{"type": "join-chat", "chatId": c.ID})
		agentWS.next("joined", 5*time.Second)
		const n = 200
		// Both sides send concurrently, each paced under the per-connection frame rate.
		pace := time.Second / (web.FrameRate - 10)
		go func() {
			for i := 0; i < n; i++ {
				visitorWS.send(map[string]any{"type": "send-message", "chatId": c.ID, "body": fmt.Sprint("v", i), "clientMsgId": fmt.Sprint("v-", i), "ref": fmt.Sprint("v", i)})
				time.Sleep(pace)
			}
		}()
		go func() {
			for i := 0; i < n; i++ {
				agentWS.send(map[string]any{"type": "send-message", "chatId": c.ID, "body": fmt.Sprint("a", i), "clientMsgId": fmt.Sprint("a-", i), "ref": fmt.Sprint("a", i)})
				time.Sleep(pace)
			}
		}()
		for name, ws := range map[string]*wsClient{"visitor": visitorWS, "agent": agentWS} {
			var seqs []int64
			acks := 0
			deadline := time.After(60 * time.Second)
			for len(seqs) < 2*n || acks < n {
				select {
				case f := <-ws.frames:
					switch f.Type {
					case "message":
						seqs = append(seqs, f.Seq)
					case "ack":
						acks++
					case "error":
						t.Fatalf("%s got error frame %+v", name, f)
					}
				case <-deadline:
					t.Fatalf("%s: %d messages and %d acks after 60s", name, len(seqs), acks)
				}
			}
			for i, seq := range seqs {
				if want := int64(i + 2); seq != want { // seq 1 is the first message
					t.Fatalf("%s: message %d has seq %d, want %d (no gaps, duplicates or reordering)", name, i, seq, want)
				}
			}
		}
		var h struct {
			Messages []struct {
				Seq         int64  `json:"seq"`
				ClientMsgID string `json:"clientMsgId"`
			} `json:"messages"`
			Complete bool `json:"complete"`
		}
		s.on("acme", "GET", fmt.Sprintf("/api/chats/%s/messages?since=0&limit=500", c.ID), tokens[0], nil, &h)
		if len(h.Messages) != 2*n+1 || !h.Complete {
			t.Fatalf("history has %d messages (complete %v), want %d", len(h.Messages), h.Complete, 2*n+1)
		}
	})

	t.Run("a retried clientMsgId stores nothing new", func(t *testing.T) {
		var first, again struct {
			ID  string `json:"id"`
			Seq int64  `json:"seq"`
		}
		body := map[string]string{"chatId": c.ID, "body": "once", "clientMsgId": "retry-me"}
		if st, b := s.on("acme", "POST", "/api/messages", visitorTok, body, &first); st != 201 {
			t.Fatalf("send: %d %s", st, b)
		}
		if st, b := s.on("acme", "POST", "/api/messages", visitorTok, body, &again); st != 200 || again.ID != first.ID || again.Seq != first.Seq {
			t.Fatalf("retry: %d %s, want 200 and message %s", st, b, first.ID)
		}
		var h struct {
			LastSeq int64 `json:"lastSeq"`
		}
		s.on("acme", "GET", fmt.Sprintf("/api/chats/%s/messages?since=%d", c.ID, first.Seq), tokens[0], nil, &h)
		if h.LastSeq != first.Seq {
			t.Fatalf("lastSeq %d after retry, want %d", h.LastSeq, first.Seq)
		}
	})

	t.Run("a PNG goes up through the presigned PUT and comes down identical", func(t *testing.T) {
		png := testPNG()
		announce := func() (up struct {
			AttachmentID  string            `json:"attachmentId"`
			UploadURL     string            `json:"uploadUrl"`
			UploadHeaders map[string]string `json:"uploadHeaders"`
		}) {
			if st, b := s.on("acme", "POST", "/api/attachments", visitorTok, map[string]any{"chatId": c.ID, "filename": "screenshot.png", "contentType": "image/png", "size": len(png)}, &up); st != 201 {
				t.Fatalf("announce: %d %s", st, b)
			}
			return up
		}
		put := func(url string, headers map[string]string, ct string) int {
			req, _ := http.NewRequest("PUT", url, bytes.NewReader(png))
			for k, v := range headers {
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
		up := announce()
		if st := put(up.UploadURL, up.UploadHeaders, "text/html"); st != 403 {
			t.Fatalf("PUT with another content type: %d, want 403", st)
		}
		if st := put(up.UploadURL, up.UploadHeaders, "image/png"); st != 200 {
			t.Fatalf("PUT: %d", st)
		}
		if st, b := s.on("acme", "POST", "/api/messages", visitorTok, map[string]string{"chatId": c.ID, "clientMsgId": "with-file", "attachmentId": up.AttachmentID}, nil); st != 201 {
			t.Fatalf("message with attachment: %d %s", st, b)
		}
		req, _ := http.NewRequest("GET", s.edge+"/api/attachments/"+up.AttachmentID, nil)
		req.Host = s.host("acme")
		req.Header.Set("Authorization", "Bearer "+tokens[0])
		resp, err := http.DefaultClient.Do(req) // follows the 302 to the presigned GET
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, png) {
			t.Fatalf("download: %d, %d bytes, want the %d uploaded bytes", resp.StatusCode, len(got), len(png))
		}
		late := announce()
		time.Sleep(4 * time.Second) // ATENDE_CELL_PRESIGN_TTL=3s
		if st := put(late.UploadURL, late.UploadHeaders, "image/png"); st != 403 {
			t.Fatalf("PUT after expiry: %d, want 403", st)
		}
	})

	t.Run("globex cannot reach acme", func(t *testing.T) {
		gAdmin := s.login("globex", globex.Admin.Email, globex.Admin.Password)
		cases := []struct {
			name, key, method, path string
			want                    []int
		}{
			{"globex token on acme host: queue", "acme", "GET", "/api/chat/queue", []int{401}},
			{"globex token on acme host: read chat", "acme", "GET", "/api/chats/" + c.ID, []int{401}},
			{"globex token on acme host: accept", "acme", "POST", "/api/chat/" + c.ID + "/accept", []int{401}},
			{"globex token on acme host: history", "acme", "GET", "/api/chats/" + c.ID + "/messages", []int{401}},
			{"acme chat id on globex host", "globex", "GET", "/api/chats/" + c.ID, []int{404}},
			{"accept acme chat on globex host", "globex", "POST", "/api/chat/" + c.ID + "/accept", []int{404}},
		}
		for _, tc := range cases {
			st, body := s.on(tc.key, tc.method, tc.path, gAdmin.AccessToken, nil, nil)
			ok := false
			for _, w := range tc.want {
				ok = ok || st == w
			}
			if !ok {
				t.Errorf("%s: %d %s, want %v", tc.name, st, body, tc.want)
			}
		}
		// The acme token on globex's host is refused too, and acme's data is unchanged.
		if st, _ := s.on("globex", "GET", "/api/chat/queue", tokens[0], nil, nil); st != 401 {
			t.Errorf("acme token on globex host: %d, want 401", st)
		}
		var got chat
		s.on("acme", "GET", "/api/chats/"+c.ID, tokens[0], nil, &got)
		if got.Status != "active" {
			t.Errorf("acme chat status %q after globex attempts, want active", got.Status)
		}
	})

	t.Run("login throttling holds when the client rotates X-Forwarded-For", func(t *testing.T) {
		statuses := map[int]int{}
		for i := 0; i < 15; i++ {
			req, _ := http.NewRequest("POST", s.edge+"/api/auth/login", strings.NewReader(`{"email":"guesser@globex.test","password":"guess"}`))
			req.Host = s.host("globex")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i+1))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			statuses[resp.StatusCode]++
		}
		if statuses[401] != 10 || statuses[429] != 5 {
			t.Fatalf("15 guesses with rotating X-Forwarded-For: %v, want 10 × 401 then 5 × 429", statuses)
		}
	})

	t.Run("unknown subdomain gets 404 and the bare host the landing page", func(t *testing.T) {
		if st, _ := s.on("nosuchtenant", "GET", "/", "", nil, nil); st != 404 {
			t.Errorf("unknown tenant: %d, want 404", st)
		}
		if st, body := s.on("nosuchtenant", "GET", "/api/chat/queue", "", nil, nil); st != 404 || !strings.Contains(body, `"code":"not_found"`) {
			t.Errorf("API on an unknown tenant: %d %s, want a 404 JSON error", st, body)
		}
		if st, body := call(t, "GET", s.edge+"/static/app.css", "localhost:"+s.port, "", nil, nil); st != 200 || strings.Contains(body, "<html") {
			t.Errorf("landing page stylesheet: %d", st)
		}
		st, body := call(t, "GET", s.edge+"/", "localhost:"+s.port, "", nil, nil)
		if st != 200 || !bytes.Contains([]byte(body), []byte("Atende")) {
			t.Errorf("landing: %d", st)
		}
	})
}

// testPNG returns a small valid PNG (1×1, from the PNG spec's minimal layout).
func testPNG() []byte {
	return []byte{
		0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
		0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
		0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
		0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
		0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
	}
}
