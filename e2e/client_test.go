package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// frame is any server WebSocket frame, decoded loosely.
type frame struct {
	Type        string          `json:"type"`
	Ref         string          `json:"ref"`
	ChatID      string          `json:"chatId"`
	Seq         int64           `json:"seq"`
	ID          string          `json:"id"`
	Body        string          `json:"body"`
	ClientMsgID string          `json:"clientMsgId"`
	Code        string          `json:"code"`
	Message     string          `json:"message"`
	LastSeq     int64           `json:"lastSeq"`
	Complete    *bool           `json:"complete"`
	Chat        *chat           `json:"chat"`
	From        json.RawMessage `json:"from"`
	At          time.Time       `json:"-"`
}

type chat struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	AgentID string `json:"agentId"`
	LastSeq int64  `json:"lastSeq"`
}

// wsClient is a WebSocket connection to a tenant through the edge that records every frame.
type wsClient struct {
	t      testing.TB
	conn   *websocket.Conn
	wmu    sync.Mutex
	frames chan frame
}

// dial gets a ticket with token and connects to the tenant's /ws through the edge.
func (s *stack) dial(key, token string) *wsClient {
	s.t.Helper()
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if st, body := s.on(key, "POST", "/api/ws-ticket", token, nil, &tk); st != 200 {
		s.t.Fatalf("ws ticket: %d %s", st, body)
	}
	edgeAddr := s.edge[len("http://"):]
	d := websocket.Dialer{
		NetDial:          func(network, _ string) (net.Conn, error) { return net.Dial(network, edgeAddr) },
		HandshakeTimeout: 10 * time.Second,
	}
	h := http.Header{"Origin": {"http://" + s.host(key)}}
	conn, resp, err := d.Dial("ws://"+s.host(key)+"/ws?ticket="+tk.Ticket, h)
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		s.t.Fatalf("dial %s: %v (status %d)", key, err, st)
	}
	c := &wsClient{t: s.t, conn: conn, frames: make(chan frame, 10000)}
	go func() {
		defer close(c.frames)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var f frame
			if json.Unmarshal(data, &f) == nil {
				f.At = time.Now()
				c.frames <- f
			}
		}
	}()
	s.t.Cleanup(func() { conn.Close() })
	return c
}

func (c *wsClient) send(v any) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Errorf("ws send: %v", err)
	}
}

// next returns the next frame of type typ (skipping others) or fails after timeout.
func (c *wsClient) next(typ string, timeout time.Duration) frame {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("socket closed while waiting for %s", typ)
			}
			if f.Type == typ {
				return f
			}
		case <-deadline:
			c.t.Fatalf("no %s frame within %v", typ, timeout)
		}
	}
}
