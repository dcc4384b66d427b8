package service

import (
	"context"
	"fmt"
	"strings"
	"time"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/realtime"
)

// ChatEvent is the realtime frame of a chat lifecycle change. Type is "chat.queued",
// "chat.accepted", "chat.transferred", "chat.resolved", "chat.abandoned", "chat.reopened" or
// "chat.updated" (labels, read receipts, CSAT).
type ChatEvent struct {
	Type string    `json:"type"`
	Chat cell.Chat `json:"chat"`
}

// MessageEvent is the realtime frame of a new message (Type "message") or note ("note").
type MessageEvent struct {
	Type string `json:"type"`
	cell.Message
}

// publishChat sends a chat event to the staff who may see the chat and to the chat's own room
// (staff following it, and its visitor: the visitor's copy carries no staff-only fields).
func (s *Service) publishChat(typ string, c cell.Chat) {
	ev := ChatEvent{Type: typ, Chat: c}
	_ = s.hub.PublishTo(realtime.StaffRoom(s.cfg.TenantID), ev, false, nil, func(cl *realtime.Client) bool {
		return s.clientMaySee(cl, c)
	})
	room := realtime.ChatRoom(s.cfg.TenantID, c.ID)
	_ = s.hub.PublishTo(room, ev, false, nil, staffOnly)
	_ = s.hub.PublishTo(room, ChatEvent{Type: typ, Chat: visitorView(c)}, false, nil, visitorOnly)
}

// visitorView strips what only staff may read from a chat: transfer notes in its history,
// labels and the capacity slot.
func visitorView(c cell.Chat) cell.Chat {
	h := make([]cell.ChatTransition, len(c.History))
	for i, t := range c.History {
		t.Note = ""
		h[i] = t
	}
	c.History, c.Labels, c.SlotID = h, []string{}, ""
	return c
}

func staffOnly(c *realtime.Client) bool   { return c.Staff }
func visitorOnly(c *realtime.Client) bool { return !c.Staff }

// OpenChatInput is what a visitor sends to start (or get) their chat.
type OpenChatInput struct {
	Message      string
	ClientMsgID  string
	DepartmentID string
}

// OpenChat returns the visitor's open chat, reopening their last chat if it closed within the
// tenant's reopen window, or creating a queued one (at most one open chat per visitor,
// arbitrated by the unique openKey index). A first message, if given, is appended idempotently
// by clientMsgID. created reports whether a new chat was made. When no agent is online or the
// tenant is outside its business hours, a new chat is refused with unavailable (the widget shows
// the offline form); an open or reopenable chat is still returned.
func (s *Service) OpenChat(ctx context.Context, p cell.Principal, in OpenChatInput) (chat cell.Chat, created bool, err error) {
	if err := requireVisitor(p); err != nil {
		return cell.Chat{}, false, err
	}
	message := strings.TrimSpace(in.Message)
	clientMsgID := in.ClientMsgID
	if message != "" {
		if err := validText("message", message, MaxBodyChars); err != nil {
			return cell.Chat{}, false, err
		}
		if clientMsgID == "" {
			clientMsgID = auth.RandomID()
		} else if !clientMsgIDPattern.MatchString(clientMsgID) {
			return cell.Chat{}, false, cell.Errorf(cell.EInvalid, "clientMsgId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
		}
	}
	if in.DepartmentID != "" {
		if _, err := s.store.Department(ctx, in.DepartmentID); err != nil {
			return cell.Chat{}, false, cell.Errorf(cell.EInvalid, "departmentId does not name a department")
		}
	}
	chat, err = s.store.OpenChatOf(ctx, p.Subject)
	if cell.ErrorCode(err) == cell.ENotFound {
		chat, created, err = s.newOrReopened(ctx, p, in.DepartmentID, message != "")
	}
	if err != nil {
		return cell.Chat{}, false, err
	}
	if message != "" {
		if _, _, err := s.SendMessage(ctx, p, SendInput{ChatID: chat.ID, Body: message, ClientMsgID: clientMsgID}); err != nil {
			return cell.Chat{}, false, err
		}
		if chat, err = s.store.Chat(ctx, chat.ID); err != nil {
			return cell.Chat{}, false, err
		}
	}
	return s.withLast(chat), created, nil
}

// newOrReopened reopens the visitor's last chat if the visitor writes (withMessage) within the
// reopen window after it closed, else creates a queued chat (refused with unavailable when the
// tenant takes no chats now).
func (s *Service) newOrReopened(ctx context.Context, p cell.Principal, departmentID string, withMessage bool) (cell.Chat, bool, error) {
	visitor, err := s.store.Visitor(ctx, p.Subject)
	if err != nil {
		return cell.Chat{}, false, err
	}
	if visitor.LastChatID != "" && withMessage {
		if last, err := s.store.Chat(ctx, visitor.LastChatID); err == nil && !last.Status.Open() {
			if c, err := s.reopen(ctx, p, last); err == nil {
				return c, false, nil
			}
		}
	}
	if st := s.Availability(ctx); !st.AcceptsChats {
		return cell.Chat{}, false, cell.Errorf(cell.EUnavailable, "%s", st.Reason)
	}
	if err := s.reserveOpenChat(ctx); err != nil {
		return cell.Chat{}, false, err
	}
	now := s.now()
	visitor.LastChatID = ""
	chat := cell.Chat{ID: auth.RandomID(), Status: cell.ChatQueued, VisitorID: p.Subject, Visitor: visitor,
		CreatedAt: now, LastActivityAt: now, OpenKey: p.Subject, DepartmentID: departmentID, Labels: []string{},
		History: []cell.ChatTransition{{Type: cell.TransitionCreated, To: cell.ChatQueued, Actor: p.Author(), At: now, DepartmentID: departmentID}}}
	err = s.store.InsertChat(ctx, &chat)
	if cell.ErrorCode(err) == cell.EConflict { // a concurrent request opened it first
		chat, err = s.store.OpenChatOf(ctx, p.Subject)
		return chat, false, err
	}
	if err != nil {
		return cell.Chat{}, false, err
	}
	s.dirNote(chat)
	if err := s.store.SetVisitorLastChat(ctx, p.Subject, chat.ID); err != nil {
		s.log.Warn("visitor last chat not recorded", "chatId", chat.ID, "error", err)
	}
	s.publishChat("chat.queued", chat)
	s.emit(ctx, "chat.created", "chat.created:"+chat.ID, chat)
	s.kickRouting()
	return chat, true, nil
}

// reopen moves the visitor's closed chat back to the queue if it closed within the tenant's
// reopen window; otherwise it returns conflict (the visitor's next message starts a new chat).
func (s *Service) reopen(ctx context.Context, p cell.Principal, c cell.Chat) (cell.Chat, error) {
	st := s.settings(ctx)
	if st.ReopenWindowMinutes < 0 || c.ClosedAt == nil || s.now().Sub(*c.ClosedAt) > time.Duration(st.ReopenWindowMinutes)*time.Minute {
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat is %s; start a new chat", c.Status)
	}
	out, err := s.mutateChat(ctx, c.ID, func(c *cell.Chat) error {
		if c.Status.Open() {
			return nil
		}
		now := s.now()
		c.History = append(c.History, cell.ChatTransition{Type: cell.TransitionReopened, From: c.Status, To: cell.ChatQueued, Actor: p.Author(), At: now, DepartmentID: c.DepartmentID})
		c.Status, c.OpenKey, c.AgentID, c.AgentName, c.LastActivityAt, c.ClosedAt = cell.ChatQueued, c.VisitorID, "", "", now, nil
		return nil
	})
	if err != nil {
		return cell.Chat{}, err
	}
	s.publishChat("chat.reopened", out)
	s.kickRouting()
	return out, nil
}

// Queue returns the queued chats the caller may see, oldest first (staff only): an agent sees
// the chats of their departments (and those without one), a tenant-admin all.
func (s *Service) Queue(ctx context.Context, p cell.Principal) ([]cell.Chat, error) {
	return s.ListChats(ctx, p, cell.ChatQueued)
}

// ListChats returns the chats in status that the caller may see, oldest first (staff only).
func (s *Service) ListChats(ctx context.Context, p cell.Principal, status cell.ChatStatus) ([]cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	if !status.Valid() {
		return nil, cell.Errorf(cell.EInvalid, "status must be queued, active, resolved or abandoned")
	}
	chats, err := s.store.ChatsByStatus(ctx, status)
	if err != nil {
		return nil, err
	}
	v, err := s.viewer(ctx, p)
	if err != nil {
		return nil, err
	}
	out := chats[:0]
	for _, c := range chats {
		if v.maySee(c) {
			out = append(out, c)
		}
	}
	return s.withLastAll(out), nil
}

// Chat returns the chat id if the caller may see it: a tenant-admin every chat; an agent the chats
// assigned to them, queued chats of their departments, and closed chats they took part in; a
// visitor only their own. Others answer not_found, so ids cannot be probed.
func (s *Service) Chat(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	c = s.withLast(c)
	switch {
	case p.HasRole(cell.RoleVisitor):
		if c.VisitorID == p.Subject {
			return visitorView(c), nil
		}
	case p.IsStaff():
		v, err := s.viewer(ctx, p)
		if err != nil {
			return cell.Chat{}, err
		}
		if v.maySee(c) || v.tookPart(c) {
			return c, nil
		}
	}
	return cell.Chat{}, cell.Errorf(cell.ENotFound, "chat not found")
}

// CanJoin returns the chat if the caller may follow its realtime room: its visitor, a
// tenant-admin, the assigned agent, or an agent of its department while it is queued. An agent
// unassigned (transfer, disable) or removed from the department stops receiving its events.
func (s *Service) CanJoin(ctx context.Context, p cell.Principal, chatID string) (cell.Chat, error) {
	c, err := s.Chat(ctx, p, chatID)
	if err != nil {
		return cell.Chat{}, err
	}
	if p.IsStaff() {
		v, err := s.viewer(ctx, p)
		if err != nil {
			return cell.Chat{}, err
		}
		if !v.maySee(c) {
			return cell.Chat{}, cell.Errorf(cell.EForbidden, "you are not assigned to this chat")
		}
	}
	return c, nil
}

// Accept assigns a queued chat to the calling agent. Exactly one of any number of concurrent
// accepts wins, and the agent's capacity holds under any interleaving, across processes too:
// both are decided by inserts against unique _ids (a capacity slot, then the chat's assignment
// claim; see assign). Losers get conflict.
func (s *Service) Accept(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return cell.Chat{}, err
	}
	// An agent of the chat's department learns that someone else took it (409, API.md), even
	// though an active chat of another agent is otherwise invisible to them (404).
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	c = s.withLast(c)
	v, err := s.viewer(ctx, p)
	if err != nil {
		return cell.Chat{}, err
	}
	if !v.admin && c.DepartmentID != "" && !contains(v.depts, c.DepartmentID) {
		return cell.Chat{}, cell.Errorf(cell.ENotFound, "chat not found")
	}
	switch {
	case c.Status == cell.ChatActive && c.AgentID == p.Subject:
		return c, nil
	case c.Status != cell.ChatQueued:
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat is already %s", c.Status)
	}
	agent, err := s.store.User(ctx, p.Subject)
	if cell.ErrorCode(err) == cell.ENotFound {
		// A verified staff token without a stored user (see viewer): it accepts with the
		// tenant's default capacity.
		agent, err = cell.User{ID: p.Subject, Name: p.Name, Roles: p.Roles}, nil
	}
	if err != nil {
		return cell.Chat{}, err
	}
	return s.assign(ctx, c, agent, p.Author(), cell.TransitionAccepted, "")
}

// TransferInput names where a chat goes: an agent (AgentID) or a department (DepartmentID, back
// to the queue), with an optional note shown to staff only.
type TransferInput struct {
	AgentID      string
	DepartmentID string
	Note         string
}

// Transfer hands an active or queued chat to another agent (who must have free capacity and,
// when the chat has a department, belong to it — unless a tenant-admin transfers) or to a
// department's queue. Allowed to the assigned agent and tenant-admins. The previous agent's
// sockets stop receiving the chat's events.
func (s *Service) Transfer(ctx context.Context, p cell.Principal, id string, in TransferInput) (cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return cell.Chat{}, err
	}
	if (in.AgentID == "") == (in.DepartmentID == "") {
		return cell.Chat{}, cell.Errorf(cell.EInvalid, "give exactly one of agentId and departmentId")
	}
	in.Note = strings.TrimSpace(in.Note)
	if err := validText("note", in.Note, 2000); err != nil {
		return cell.Chat{}, err
	}
	c, err := s.Chat(ctx, p, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if !c.Status.Open() {
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat is %s", c.Status)
	}
	if !p.HasRole(cell.RoleTenantAdmin) && c.AgentID != p.Subject {
		return cell.Chat{}, cell.Errorf(cell.EForbidden, "only the assigned agent or a tenant-admin may transfer this chat")
	}
	if in.AgentID != "" {
		agent, err := s.store.User(ctx, in.AgentID)
		if err != nil || agent.Disabled || !(agent.HasRole(cell.RoleAgent) || agent.HasRole(cell.RoleTenantAdmin)) {
			return cell.Chat{}, cell.Errorf(cell.EInvalid, "agentId does not name an enabled agent")
		}
		if agent.ID == c.AgentID {
			return cell.Chat{}, cell.Errorf(cell.EConflict, "the chat is already assigned to this agent")
		}
		if c.DepartmentID != "" && !contains(agent.Departments, c.DepartmentID) && !p.HasRole(cell.RoleTenantAdmin) {
			return cell.Chat{}, cell.Errorf(cell.EInvalid, "the agent is not in the chat's department")
		}
		out, err := s.assign(ctx, c, agent, p.Author(), cell.TransitionTransferred, in.Note)
		if err == nil {
			s.transferNote(ctx, p, out, in.Note)
		}
		return out, err
	}
	if _, err := s.store.Department(ctx, in.DepartmentID); err != nil {
		return cell.Chat{}, cell.Errorf(cell.EInvalid, "departmentId does not name a department")
	}
	var prevAgent, prevSlot string
	out, err := s.mutateChat(ctx, id, func(c *cell.Chat) error {
		if !c.Status.Open() {
			return cell.Errorf(cell.EConflict, "chat is %s", c.Status)
		}
		prevAgent, prevSlot = c.AgentID, c.SlotID
		now := s.now()
		c.History = append(c.History, cell.ChatTransition{Type: cell.TransitionTransferred, From: c.Status, To: cell.ChatQueued, Actor: p.Author(), At: now, DepartmentID: in.DepartmentID, Note: in.Note})
		c.Status, c.DepartmentID, c.AgentID, c.AgentName, c.SlotID = cell.ChatQueued, in.DepartmentID, "", "", ""
		return nil
	})
	if err != nil {
		return cell.Chat{}, err
	}
	if prevSlot != "" {
		_ = s.store.Release(ctx, prevSlot, id)
	}
	s.afterReassign(ctx, out, prevAgent)
	s.publishChat("chat.transferred", out)
	s.emit(ctx, "chat.transferred", fmt.Sprintf("chat.transferred:%s:%d", id, len(out.History)), out)
	s.transferNote(ctx, p, out, in.Note)
	s.kickRouting()
	return out, nil
}

// transferNote stores a transfer's note as a private note of the chat, so the next agent reads
// it in the chat itself.
func (s *Service) transferNote(ctx context.Context, p cell.Principal, c cell.Chat, note string) {
	if note == "" {
		return
	}
	msg := cell.Message{ChatID: c.ID, ClientMsgID: fmt.Sprintf("transfer-%d", len(c.History)), From: p.Author(), Body: note, CreatedAt: s.now(), Private: true}
	if _, err := s.append(ctx, p, &msg, c, 0); err != nil { // gen 0: read the chat again
		s.log.Warn("transfer note not stored", "chatId", c.ID, "error", err)
	}
}

// Resolve closes a chat. Allowed to the assigned agent, a tenant-admin, or the chat's visitor. A
// queued chat closed by its visitor is abandoned (nobody accepted it). Closing a closed chat
// returns it unchanged.
func (s *Service) Resolve(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	c, err := s.Chat(ctx, p, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if !c.Status.Open() {
		return c, nil
	}
	allowed := p.HasRole(cell.RoleTenantAdmin) || (p.HasRole(cell.RoleVisitor) && c.VisitorID == p.Subject) ||
		(p.IsStaff() && c.AgentID == p.Subject)
	if !allowed {
		return cell.Chat{}, cell.Errorf(cell.EForbidden, "only the assigned agent, a tenant-admin or the visitor may resolve this chat")
	}
	out, err := s.close(ctx, id, p.Author())
	if err != nil {
		return cell.Chat{}, err
	}
	if p.HasRole(cell.RoleVisitor) {
		return visitorView(out), nil
	}
	return out, nil
}

// close resolves an active chat or abandons a queued one, frees the agent's capacity slot and
// publishes the change. It is idempotent.
func (s *Service) close(ctx context.Context, id string, actor cell.Author) (cell.Chat, error) {
	var prevAgent, prevSlot string
	var changed bool
	out, err := s.mutateChat(ctx, id, func(c *cell.Chat) error {
		if !c.Status.Open() {
			return nil
		}
		changed = true
		now := s.now()
		typ, to := cell.TransitionResolved, cell.ChatResolved
		if c.Status == cell.ChatQueued && c.AcceptedAt == nil {
			typ, to = cell.TransitionAbandoned, cell.ChatAbandoned
		}
		prevAgent, prevSlot = c.AgentID, c.SlotID
		c.History = append(c.History, cell.ChatTransition{Type: typ, From: c.Status, To: to, Actor: actor, At: now, AgentID: c.AgentID, DepartmentID: c.DepartmentID})
		c.Status, c.OpenKey, c.ClosedAt, c.SlotID = to, "", &now, ""
		if to == cell.ChatResolved {
			c.ResolvedAt = &now
		}
		return nil
	})
	if err != nil || !changed {
		return out, err
	}
	if prevSlot != "" {
		_ = s.store.Release(ctx, prevSlot, id)
	}
	typ := "chat." + string(out.Status)
	s.publishChat(typ, out)
	if out.Status == cell.ChatResolved {
		s.emit(ctx, "chat.resolved", "chat.resolved:"+id+fmt.Sprintf(":%d", len(out.History)), out)
	}
	_ = prevAgent
	s.kickRouting()
	return out, nil
}

// mutateChat applies fn to the chat under its lock (re-read under the lock) and saves the result
// when fn returns nil. It returns the saved chat (with the unflushed lastSeq overlaid).
func (s *Service) mutateChat(ctx context.Context, id string, fn func(c *cell.Chat) error) (cell.Chat, error) {
	st := s.lockChat(id)
	defer s.unlockChat(id, st)
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	before := c.Status
	if err := fn(&c); err != nil {
		return cell.Chat{}, err
	}
	if c.Labels == nil {
		c.Labels = []string{}
	}
	err = s.store.ReplaceChat(ctx, &c)
	s.bumpGen(st) // even on error: the write may have happened
	if err != nil {
		return cell.Chat{}, err
	}
	s.dirNote(c)
	if before.Open() && !c.Status.Open() {
		st.closed = true
	} else if !before.Open() && c.Status.Open() {
		st.closed = false
	}
	return s.withLast(c), nil
}

// SetLabels replaces the chat's labels (the assigned agent or a tenant-admin).
func (s *Service) SetLabels(ctx context.Context, p cell.Principal, id string, labels []string) (cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return cell.Chat{}, err
	}
	if len(labels) > cell.MaxLabels {
		return cell.Chat{}, cell.Errorf(cell.EInvalid, "at most %d labels", cell.MaxLabels)
	}
	clean := []string{}
	for _, l := range labels {
		l = strings.ToLower(strings.TrimSpace(l))
		if !cell.LabelPattern.MatchString(l) {
			return cell.Chat{}, cell.Errorf(cell.EInvalid, "label %q must be 1-32 of a-z 0-9 _ - (starting with a letter or digit)", l)
		}
		if !contains(clean, l) {
			clean = append(clean, l)
		}
	}
	c, err := s.Chat(ctx, p, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if !p.HasRole(cell.RoleTenantAdmin) && c.AgentID != p.Subject {
		return cell.Chat{}, cell.Errorf(cell.EForbidden, "only the assigned agent or a tenant-admin may label this chat")
	}
	out, err := s.mutateChat(ctx, id, func(c *cell.Chat) error { c.Labels = clean; return nil })
	if err != nil {
		return cell.Chat{}, err
	}
	s.publishChat("chat.updated", out)
	return out, nil
}

// MarkRead records that the caller's side (visitor or agent) has read the chat up to seq and
// returns the chat. A lower seq than the recorded one changes nothing; a seq past the chat's
// newest message is invalid.
func (s *Service) MarkRead(ctx context.Context, p cell.Principal, id string, seq int64) (cell.Chat, error) {
	c, err := s.CanJoin(ctx, p, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if seq < 0 || seq > c.LastSeq {
		return cell.Chat{}, cell.Errorf(cell.EInvalid, "seq must be between 0 and the chat's last seq (%d)", c.LastSeq)
	}
	visitor := p.HasRole(cell.RoleVisitor)
	if (visitor && seq <= c.VisitorReadSeq) || (!visitor && seq <= c.AgentReadSeq) {
		return c, nil
	}
	return s.mutateChat(ctx, id, func(c *cell.Chat) error {
		if visitor {
			c.VisitorReadSeq = max(c.VisitorReadSeq, seq)
		} else {
			c.AgentReadSeq = max(c.AgentReadSeq, seq)
		}
		return nil
	})
}

// RateChat records the visitor's CSAT (score 1–5, optional comment ≤ 1000 characters) once,
// after the chat was resolved; a second rating is a conflict.
func (s *Service) RateChat(ctx context.Context, p cell.Principal, id string, score int, comment string) (cell.Chat, error) {
	if err := requireVisitor(p); err != nil {
		return cell.Chat{}, err
	}
	comment = strings.TrimSpace(comment)
	if score < 1 || score > 5 {
		return cell.Chat{}, cell.Errorf(cell.EInvalid, "score must be 1 to 5")
	}
	if err := validText("comment", comment, 1000); err != nil {
		return cell.Chat{}, err
	}
	c, err := s.Chat(ctx, p, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if c.Status != cell.ChatResolved {
		return cell.Chat{}, cell.Errorf(cell.EConflict, "a chat can be rated once it is resolved")
	}
	if holder, _, err := s.store.Claim(ctx, "csat:"+id, p.Subject); err != nil {
		return cell.Chat{}, err
	} else if c.CSAT != nil || holder != p.Subject {
		return cell.Chat{}, cell.Errorf(cell.EConflict, "this chat was already rated")
	}
	out, err := s.mutateChat(ctx, id, func(c *cell.Chat) error {
		if c.CSAT != nil {
			return cell.Errorf(cell.EConflict, "this chat was already rated")
		}
		c.CSAT = &cell.CSAT{Score: score, Comment: comment, At: s.now()}
		return nil
	})
	if err != nil {
		return cell.Chat{}, err
	}
	s.publishChat("chat.updated", out)
	return visitorView(out), nil
}

// Transcript returns the chat as plain text: a header, then every message (never notes) in seq
// order as "[time] name: body". The chat's visitor and staff who may see it may ask.
func (s *Service) Transcript(ctx context.Context, p cell.Principal, id string) (string, error) {
	c, err := s.Chat(ctx, p, id)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	name := s.cfg.TenantName
	if name == "" {
		name = s.cfg.TenantKey
	}
	fmt.Fprintf(&b, "Chat transcript — %s\nChat: %s\nStarted: %s\nStatus: %s\n\n", name, c.ID, c.CreatedAt.Format(time.RFC3339), c.Status)
	var since int64
	for {
		h, err := s.History(ctx, p, id, since, MaxHistoryPage)
		if err != nil {
			return "", err
		}
		for _, m := range h.Messages {
			body := m.Body
			if m.Attachment != nil {
				body = strings.TrimSpace(body + " [attachment: " + m.Attachment.Filename + "]")
			}
			fmt.Fprintf(&b, "[%s] %s: %s\n", m.CreatedAt.Format(time.RFC3339), m.From.Name, body)
			since = m.Seq
		}
		if h.Complete || len(h.Messages) == 0 {
			break
		}
	}
	return b.String(), nil
}

// Notes returns up to limit private notes of the chat with seq > since (staff who may see it).
func (s *Service) Notes(ctx context.Context, p cell.Principal, chatID string, since int64, limit int) (History, error) {
	if err := requireStaff(p); err != nil {
		return History{}, err
	}
	return s.page(ctx, p, chatID, since, limit, true)
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// openCountTTL is how long a scanned count of open chats is reused (plus this process's own
// creations since).
const openCountTTL = time.Second

// reserveOpenChat enforces the plan's MaxOpenChats: it refuses a new chat with unavailable when
// the tenant already has that many open. The count is a scan cached for openCountTTL plus this
// process's creations since, so the limit is exact for one cell process and soft across replicas.
func (s *Service) reserveOpenChat(ctx context.Context) error {
	if s.cfg.MaxOpenChats <= 0 {
		return nil
	}
	s.openMu.Lock()
	defer s.openMu.Unlock()
	if time.Since(s.openAt) > openCountTTL {
		chats, err := s.store.AllChats(ctx)
		if err != nil {
			return err
		}
		n := 0
		for _, c := range chats {
			if c.Status.Open() {
				n++
			}
		}
		s.openCount, s.openAt = n, time.Now()
	}
	if s.openCount >= s.cfg.MaxOpenChats {
		return cell.Errorf(cell.EUnavailable, "all %d conversations the plan allows are in use; leave a message and we will get back to you", s.cfg.MaxOpenChats)
	}
	s.openCount++
	return nil
}
