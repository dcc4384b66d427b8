package web

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"atende/cell"
	"atende/cell/realtime"
	"atende/cell/service"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"
)

// WebSocket limits.
const (
	// MaxFrameBytes is the largest client frame accepted (64 KB); a larger one closes the socket.
	MaxFrameBytes = 64 << 10
	// FrameRate and FrameBurst bound the frames one connection may send: FrameRate per second
	// sustained, FrameBurst at once. Frames beyond it are refused with rate_limited.
	FrameRate  = 50
	FrameBurst = 100
	// pongWait is how long a silent connection lives; the server pings every pingPeriod.
	pongWait   = 60 * time.Second
	pingPeriod = 25 * time.Second
	writeWait  = 10 * time.Second
)

// clientFrame is any frame a client sends (API.md "Realtime").
type clientFrame struct {
	Type         string `json:"type"`
	Ref          string `json:"ref,omitempty"`
	ChatID       string `json:"chatId,omitempty"`
	Body         string `json:"body,omitempty"`
	ClientMsgID  string `json:"clientMsgId,omitempty"`
	AttachmentID string `json:"attachmentId,omitempty"`
	State        string `json:"state,omitempty"`
	Seq          int64  `json:"seq,omitempty"`
	Since        int64  `json:"since,omitempty"`
	// Private: on send-message a note, on typing "writing a note" (never shown to the
	// visitor), on resume the note stream.
	Private bool `json:"private,omitempty"`
}

// ackFrame confirms a persisted message to its sender.
type ackFrame struct {
	Type        string `json:"type"`
	Ref         string `json:"ref,omitempty"`
	ChatID      string `json:"chatId"`
	MessageID   string `json:"messageId"`
	Seq         int64  `json:"seq"`
	ClientMsgID string `json:"clientMsgId"`
}

// errorFrame reports a refused frame.
type errorFrame struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// chatStateFrame answers join-chat ("joined") and resume ("resumed").
type chatStateFrame struct {
	Type     string `json:"type"`
	Ref      string `json:"ref,omitempty"`
	ChatID   string `json:"chatId"`
	LastSeq  int64  `json:"lastSeq"`
	Complete *bool  `json:"complete,omitempty"`
}

// signalFrame relays typing and read receipts.
type signalFrame struct {
	Type   string      `json:"type"`
	ChatID string      `json:"chatId"`
	From   cell.Author `json:"from"`
	State  string      `json:"state,omitempty"`
	Seq    int64       `json:"seq,omitempty"`
	// Private marks typing of a note (sent to staff only).
	Private bool `json:"private,omitempty"`
}

// upgrade checks, before the WebSocket handshake, the Origin (exactly one of the tenant's
// origins; a missing Origin — a non-browser client — is allowed, "null" is not) and the
// credentials (?ticket= single-use ticket, or ?token= access/visitor token).
func (s *Server) upgrade(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return fiber.ErrUpgradeRequired
	}
	if origin := c.Get(fiber.HeaderOrigin); origin != "" && !slices.Contains(s.origins, origin) && !s.compatOrigin(c, origin) {
		return cell.Errorf(cell.EForbidden, "origin %q may not open a socket to this tenant", origin)
	}
	var (
		p   cell.Principal
		err error
	)
	if t := c.Query("ticket"); t != "" {
		p, err = s.svc.RedeemTicket(c.UserContext(), t)
	} else if t := c.Query("token"); t != "" {
		p, err = s.svc.Authenticate(c.UserContext(), t, "access", "visitor")
	} else {
		err = cell.Errorf(cell.EUnauthorized, "a ticket or token is required")
	}
	if err != nil {
		return err
	}
	if p.HasRole(cell.RoleSuperAdmin) {
		return cell.Errorf(cell.EForbidden, "super-admin tokens do not open chat sockets")
	}
	c.Locals(principalKey, p)
	c.Locals(clientIPKey, c.IP())
	return c.Next()
}

// clientIPKey holds the client's address between the upgrade check and the socket.
const clientIPKey = "atende.clientIP"

func (s *Server) websocket() fiber.Handler {
	return websocket.New(func(conn *websocket.Conn) {
		p, _ := conn.Locals(principalKey).(cell.Principal)
		ip, _ := conn.Locals(clientIPKey).(string)
		s.serveSocket(service.WithClientIP(context.Background(), ip), conn, p)
	}, websocket.Config{Origins: []string{"*"}}) // Origin was checked exactly in upgrade.
}

// serveSocket runs one connection: a writer draining the client's outbox (and pinging), and
// this goroutine reading and handling frames until the peer leaves or the hub drops it.
func (s *Server) serveSocket(ctx context.Context, conn *websocket.Conn, p cell.Principal) {
	hub := s.svc.Hub()
	s.metrics.sockets.Inc()
	defer s.metrics.sockets.Dec()
	client := realtime.NewClient(p.Subject, p.SessionID)
	client.Staff, client.Admin = p.IsStaff(), p.HasRole(cell.RoleTenantAdmin)
	defer hub.Remove(client)
	if p.IsStaff() {
		_ = hub.Join(client, realtime.StaffRoom(s.cfg.TenantID))
		s.svc.AgentConnected(p.Subject)
		defer s.svc.AgentDisconnected(p.Subject)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop(conn, client)
	}()
	conn.SetReadLimit(MaxFrameBytes)
	_ = conn.SetReadDeadline(time.Now().Add(pongWait))
	conn.SetPongHandler(func(string) error {
		if p.IsStaff() {
			s.svc.Heartbeat(p.Subject)
		}
		return conn.SetReadDeadline(time.Now().Add(pongWait))
	})
	limit := rate.NewLimiter(FrameRate, FrameBurst)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			break
		}
		select {
		case <-client.Done():
			// The hub ended this client (logout, disable, removal, slow consumer): a frame that
			// arrives after that is never executed, even from a client that ignores the close.
			hub.Remove(client)
			<-writerDone
			return
		default:
		}
		_ = conn.SetReadDeadline(time.Now().Add(pongWait))
		if p.IsStaff() {
			s.svc.Heartbeat(p.Subject)
		}
		if !limit.Allow() {
			s.metrics.rateLimited.WithLabelValues("ws-frame").Inc()
			replyError(client, "", cell.Errorf(cell.ERateLimited, "more than %d frames per second on this connection", FrameRate))
			continue
		}
		s.handleFrame(ctx, client, p, data)
	}
	hub.Remove(client)
	<-writerDone
}

// writeLoop writes queued frames in order and pings; it closes the socket when the client is
// closed (slow consumer, or the reader ended).
func (s *Server) writeLoop(conn *websocket.Conn, client *realtime.Client) {
	ping := time.NewTicker(pingPeriod)
	defer ping.Stop()
	defer conn.Close()
	for {
		select {
		case frame := <-client.Outbox():
			_ = conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := conn.WriteMessage(websocket.TextMessage, frame); err != nil {
				return
			}
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		case <-client.Done():
			if reason := client.CloseReason(); reason != "" {
				code := websocket.CloseTryAgainLater // slow consumer: reconnect and resume
				if reason != realtime.ReasonSlowConsumer {
					code = websocket.ClosePolicyViolation // session ended: do not reconnect with it
				}
				// A short deadline: a client that does not read must not keep the socket open.
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(closeWait))
			}
			return
		}
	}
}

// closeWait bounds the close frame sent to a client the hub ended; the socket closes after it.
const closeWait = time.Second

// reply queues a frame to this client only.
func reply(client *realtime.Client, frame any) {
	data, err := json.Marshal(frame)
	if err == nil {
		client.Send(data, false)
	}
}

func replyError(client *realtime.Client, ref string, err error) {
	reply(client, errorFrame{Type: "error", Ref: ref, Code: cell.ErrorCode(err), Message: cell.ErrorMessage(err)})
}

// frameError replies with an error frame and, for a refusal (not found, forbidden,
// unauthorized: how a probe of another tenant's or visitor's chat ends), records it in the
// audit log and the metrics like a refused HTTP request.
func (s *Server) frameError(ctx context.Context, client *realtime.Client, p cell.Principal, f clientFrame, err error) {
	defer replyError(client, f.Ref, err) // after the audit write, so a reader of the log sees it
	switch code := cell.ErrorCode(err); code {
	case cell.ENotFound, cell.EForbidden, cell.EUnauthorized:
		s.metrics.denied.WithLabelValues("ws-" + code).Inc()
		if s.deniedAudits.Allow() {
			s.svc.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "frame.denied",
				Target: f.Type + " " + f.ChatID, Outcome: cell.OutcomeDenied, Detail: code + ": " + cell.ErrorMessage(err)})
		}
	}
}

// handleFrame authorizes and runs one client frame. Each frame is checked on its own (role,
// tenant, chat membership) through the service, exactly like the REST route doing the same.
func (s *Server) handleFrame(sockCtx context.Context, client *realtime.Client, p cell.Principal, data []byte) {
	var f clientFrame
	if err := checkJSONKeys(data); err != nil {
		replyError(client, "", err)
		return
	}
	if err := json.Unmarshal(data, &f); err != nil {
		replyError(client, "", cell.Errorf(cell.EInvalid, "frame is not a JSON object of the expected shape: %v", err))
		return
	}
	ctx, cancel := context.WithTimeout(sockCtx, 15*time.Second)
	defer cancel()
	hub := s.svc.Hub()
	switch f.Type {
	case "ping":
		reply(client, map[string]string{"type": "pong", "ref": f.Ref})
	case "join-chat":
		chat, err := s.svc.CanJoin(ctx, p, f.ChatID)
		if err == nil {
			err = hub.Join(client, realtime.ChatRoom(s.cfg.TenantID, chat.ID))
			if err == realtime.ErrTooManyRooms {
				err = cell.Errorf(cell.EInvalid, "%v", err)
			}
		}
		if err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		reply(client, chatStateFrame{Type: "joined", Ref: f.Ref, ChatID: chat.ID, LastSeq: chat.LastSeq})
	case "resume":
		history, typ := s.svc.History, "message"
		if f.Private {
			history, typ = s.svc.Notes, "note"
		}
		h, err := history(ctx, p, f.ChatID, f.Since, service.MaxHistoryPage)
		if err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		for _, m := range h.Messages {
			// A page may be longer than the outbox: wait for the client to read (it is this
			// client's own reader goroutine that waits) instead of dropping a reading client.
			data, err := json.Marshal(service.MessageEvent{Type: typ, Message: m})
			if err != nil || !client.SendWait(data, writeWait) {
				return
			}
		}
		complete := h.Complete
		reply(client, chatStateFrame{Type: "resumed", Ref: f.Ref, ChatID: f.ChatID, LastSeq: h.LastSeq, Complete: &complete})
	case "send-message":
		if !s.allowBudget("messages") {
			s.metrics.rateLimited.WithLabelValues("tenant-messages").Inc()
			replyError(client, f.Ref, cell.Errorf(cell.ERateLimited, "the tenant's plan allows no more messages right now; try again shortly"))
			return
		}
		msg, _, err := s.svc.SendMessage(ctx, p, service.SendInput{ChatID: f.ChatID, Body: f.Body, ClientMsgID: f.ClientMsgID, AttachmentID: f.AttachmentID, Private: f.Private})
		if err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		reply(client, ackFrame{Type: "ack", Ref: f.Ref, ChatID: msg.ChatID, MessageID: msg.ID, Seq: msg.Seq, ClientMsgID: msg.ClientMsgID})
	case "presence":
		if err := s.svc.SetPresence(p, f.State); err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		reply(client, service.PresenceFrame{Type: "presence", AgentID: p.Subject, Status: s.svc.PresenceOf(p.Subject)})
	case "typing":
		chat, err := s.svc.CanJoin(ctx, p, f.ChatID)
		if err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		if f.State != "on" && f.State != "off" {
			s.frameError(ctx, client, p, f, cell.Errorf(cell.EInvalid, "state must be on or off"))
			return
		}
		if f.Private && !p.IsStaff() {
			s.frameError(ctx, client, p, f, cell.Errorf(cell.EForbidden, "only staff write notes"))
			return
		}
		sig := signalFrame{Type: "typing", ChatID: chat.ID, From: p.Author(), State: f.State, Private: f.Private}
		var filter func(*realtime.Client) bool
		if f.Private { // typing a note is shown to staff only
			filter = func(c *realtime.Client) bool { return c.Staff }
		}
		_ = hub.PublishTo(realtime.ChatRoom(s.cfg.TenantID, chat.ID), sig, true, client, filter)
	case "read":
		chat, err := s.svc.MarkRead(ctx, p, f.ChatID, f.Seq)
		if err != nil {
			s.frameError(ctx, client, p, f, err)
			return
		}
		sig := signalFrame{Type: "read", ChatID: chat.ID, From: p.Author(), Seq: f.Seq}
		_ = hub.Publish(realtime.ChatRoom(s.cfg.TenantID, chat.ID), sig, false, client)
	default:
		s.frameError(ctx, client, p, f, cell.Errorf(cell.EInvalid, "unknown frame type %q", f.Type))
	}
}
