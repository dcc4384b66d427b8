package service

import (
	"context"
	"strings"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/realtime"
)

// ChatEvent is the realtime frame of a chat lifecycle change. Type is "chat.queued",
// "chat.accepted", "chat.resolved" or "chat.transferred".
type ChatEvent struct {
	Type string    `json:"type"`
	Chat cell.Chat `json:"chat"`
}

// MessageEvent is the realtime frame of a new message.
type MessageEvent struct {
	Type string `json:"type"`
	cell.Message
}

// publishChat sends a chat event to the tenant's staff and to the chat's own room.
func (s *Service) publishChat(typ string, c cell.Chat) {
	ev := ChatEvent{Type: typ, Chat: c}
	_ = s.hub.Publish(realtime.StaffRoom(s.cfg.TenantID), ev, false, nil)
	_ = s.hub.Publish(realtime.ChatRoom(s.cfg.TenantID, c.ID), ev, false, nil)
}

// OpenChat returns the visitor's open chat, creating a queued one if there is none (at most one
// open chat per visitor, arbitrated by the unique openKey index). A first message, if given, is
// appended idempotently by clientMsgID. created reports whether a new chat was made.
func (s *Service) OpenChat(ctx context.Context, p cell.Principal, message, clientMsgID string) (chat cell.Chat, created bool, err error) {
	if err := requireVisitor(p); err != nil {
		return cell.Chat{}, false, err
	}
	message = strings.TrimSpace(message)
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
	chat, err = s.store.OpenChatOf(ctx, p.Subject)
	if cell.ErrorCode(err) == cell.ENotFound {
		visitor, verr := s.store.Visitor(ctx, p.Subject)
		if verr != nil {
			return cell.Chat{}, false, verr
		}
		chat = cell.Chat{ID: auth.RandomID(), Status: cell.ChatQueued, VisitorID: p.Subject, Visitor: visitor, CreatedAt: s.now(), OpenKey: p.Subject}
		err = s.store.InsertChat(ctx, &chat)
		created = err == nil
		if cell.ErrorCode(err) == cell.EConflict { // a concurrent request opened it first
			chat, err = s.store.OpenChatOf(ctx, p.Subject)
		}
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
		chat = s.withLast(chat)
	}
	if created {
		s.publishChat("chat.queued", chat)
	}
	return chat, created, nil
}

// Queue returns the queued chats, oldest first (staff only).
func (s *Service) Queue(ctx context.Context, p cell.Principal) ([]cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	chats, err := s.store.ChatsByStatus(ctx, cell.ChatQueued)
	return s.withLastAll(chats), err
}

// ListChats returns the chats in status (staff only).
func (s *Service) ListChats(ctx context.Context, p cell.Principal, status cell.ChatStatus) ([]cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	if !status.Valid() {
		return nil, cell.Errorf(cell.EInvalid, "status must be queued, active or resolved")
	}
	chats, err := s.store.ChatsByStatus(ctx, status)
	return s.withLastAll(chats), err
}

// Chat returns the chat id if the caller may see it: staff see every chat of the tenant, a
// visitor only their own (others answer not_found, so ids cannot be probed).
func (s *Service) Chat(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	c = s.withLast(c)
	if p.IsStaff() {
		return c, nil
	}
	if p.HasRole(cell.RoleVisitor) && c.VisitorID == p.Subject {
		return c, nil
	}
	return cell.Chat{}, cell.Errorf(cell.ENotFound, "chat not found")
}

// Accept assigns a queued chat to the calling agent. Exactly one of any number of concurrent
// accepts wins: the winner is decided by inserting the chat's accept claim against a unique index
// (FerretDB v1 does not run conditional updates atomically). Losers get conflict. Retrying an
// accept one already won (e.g. after a crash between claim and update) completes it.
func (s *Service) Accept(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	if err := requireStaff(p); err != nil {
		return cell.Chat{}, err
	}
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	switch {
	case c.Status == cell.ChatActive && c.AgentID == p.Subject:
		return c, nil
	case c.Status != cell.ChatQueued:
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat is already %s", c.Status)
	}
	holder, _, err := s.store.Claim(ctx, "accept:"+id, p.Subject)
	if err != nil {
		return cell.Chat{}, err
	}
	if holder != p.Subject {
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat was accepted by another agent")
	}
	st := s.lockChat(id)
	defer s.unlockChat(id, st)
	if c, err = s.store.Chat(ctx, id); err != nil {
		return cell.Chat{}, err
	}
	switch {
	case c.Status == cell.ChatActive && c.AgentID == p.Subject:
		return s.withLast(c), nil
	case c.Status != cell.ChatQueued: // resolved while we claimed
		return cell.Chat{}, cell.Errorf(cell.EConflict, "chat is already %s", c.Status)
	}
	if err := s.store.SetChatAccepted(ctx, id, p.Author(), s.now()); err != nil {
		return cell.Chat{}, err
	}
	if c, err = s.store.Chat(ctx, id); err != nil {
		return cell.Chat{}, err
	}
	c = s.withLast(c)
	s.publishChat("chat.accepted", c)
	return c, nil
}

// Resolve closes a chat. Allowed to the assigned agent, a tenant-admin, or the chat's visitor.
// Resolving a resolved chat returns it unchanged.
func (s *Service) Resolve(ctx context.Context, p cell.Principal, id string) (cell.Chat, error) {
	if _, err := s.Chat(ctx, p, id); err != nil {
		return cell.Chat{}, err
	}
	st := s.lockChat(id)
	defer s.unlockChat(id, st)
	c, err := s.store.Chat(ctx, id)
	if err != nil {
		return cell.Chat{}, err
	}
	if c.Status == cell.ChatResolved {
		return s.withLast(c), nil
	}
	allowed := p.HasRole(cell.RoleTenantAdmin) || (p.HasRole(cell.RoleVisitor) && c.VisitorID == p.Subject) ||
		(p.IsStaff() && c.AgentID == p.Subject)
	if !allowed {
		return cell.Chat{}, cell.Errorf(cell.EForbidden, "only the assigned agent, a tenant-admin or the visitor may resolve this chat")
	}
	if err := s.store.SetChatResolved(ctx, id, s.now()); err != nil {
		return cell.Chat{}, err
	}
	st.closed = true
	if c, err = s.store.Chat(ctx, id); err != nil {
		return cell.Chat{}, err
	}
	c = s.withLast(c)
	s.publishChat("chat.resolved", c)
	return c, nil
}

// CanJoin returns the chat if the caller may follow its realtime room: the chat's visitor, or
// any agent or tenant-admin of the tenant.
func (s *Service) CanJoin(ctx context.Context, p cell.Principal, chatID string) (cell.Chat, error) {
	return s.Chat(ctx, p, chatID)
}
