package service

import (
	"context"
	"regexp"
	"strings"

	"atende/cell"
	"atende/cell/auth"
)

// secretMask replaces the webhook secret in settings read back.
const secretMask = "********"

// Settings returns the tenant's settings (tenant-admins); the webhook secret is masked.
func (s *Service) Settings(ctx context.Context, p cell.Principal) (cell.Settings, error) {
	if err := requireAdmin(p); err != nil {
		return cell.Settings{}, err
	}
	st, err := s.store.Settings(ctx)
	if err != nil {
		return cell.Settings{}, err
	}
	if st.Webhook.Secret != "" {
		st.Webhook.Secret = secretMask
	}
	return st, nil
}

// SaveSettings validates and replaces the tenant's settings (tenant-admins). A webhook secret
// sent back masked keeps the stored one. Invalid settings change nothing. The change is audited.
func (s *Service) SaveSettings(ctx context.Context, p cell.Principal, st cell.Settings) (cell.Settings, error) {
	if err := requireAdmin(p); err != nil {
		return cell.Settings{}, err
	}
	if st.Webhook.Secret == secretMask {
		prev, err := s.store.Settings(ctx)
		if err != nil {
			return cell.Settings{}, err
		}
		st.Webhook.Secret = prev.Webhook.Secret
	}
	if err := st.Normalize(); err != nil {
		return cell.Settings{}, err
	}
	st.UpdatedAt = s.now()
	if err := s.store.SaveSettings(ctx, &st); err != nil {
		return cell.Settings{}, err
	}
	s.setMu.Lock()
	s.setCache, s.setAt = st, s.now()
	s.setMu.Unlock()
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "settings.update", Target: cell.SettingsKey, Outcome: cell.OutcomeOK})
	s.kickRouting()
	return s.Settings(ctx, p)
}

// CurrentSettings returns the tenant's settings for internal use (webhook delivery), unmasked.
func (s *Service) CurrentSettings(ctx context.Context) cell.Settings { return s.settings(ctx) }

// Departments lists the tenant's departments (staff).
func (s *Service) Departments(ctx context.Context, p cell.Principal) ([]cell.Department, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	return s.store.Departments(ctx)
}

// CreateDepartment adds a department (tenant-admins): name 1–80 characters, unique
// (case-insensitive); routing "", manual or auto.
func (s *Service) CreateDepartment(ctx context.Context, p cell.Principal, name, routing string) (cell.Department, error) {
	if err := requireAdmin(p); err != nil {
		return cell.Department{}, err
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return cell.Department{}, cell.Errorf(cell.EInvalid, "name is required")
	}
	if err := validText("name", name, 80); err != nil {
		return cell.Department{}, err
	}
	if routing != "" && routing != cell.RoutingManual && routing != cell.RoutingAuto {
		return cell.Department{}, cell.Errorf(cell.EInvalid, "routing must be manual or auto (or empty for the tenant's)")
	}
	d := cell.Department{ID: auth.RandomID(), Name: name, Routing: routing, CreatedAt: s.now()}
	if err := s.store.CreateDepartment(ctx, &d); err != nil {
		return cell.Department{}, err
	}
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "department.create", Target: d.ID, Outcome: cell.OutcomeOK})
	return d, nil
}

// DeleteDepartment removes a department (tenant-admins). Its open chats keep their department id
// and stay visible to tenant-admins, who may transfer them.
func (s *Service) DeleteDepartment(ctx context.Context, p cell.Principal, id string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	if err := s.store.DeleteDepartment(ctx, id); err != nil {
		return err
	}
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "department.delete", Target: id, Outcome: cell.OutcomeOK})
	return nil
}

// SetAgentRouting replaces an agent's departments and capacity (tenant-admins; capacity 0 is
// the tenant's default, at most cell.MaxCapacity). Sockets of the agent stop following chats they
// may no longer see.
func (s *Service) SetAgentRouting(ctx context.Context, p cell.Principal, id string, departments []string, capacity int) (cell.User, error) {
	if err := requireAdmin(p); err != nil {
		return cell.User{}, err
	}
	if capacity < 0 || capacity > cell.MaxCapacity {
		return cell.User{}, cell.Errorf(cell.EInvalid, "capacity must be between 0 (tenant default) and %d", cell.MaxCapacity)
	}
	if departments == nil {
		departments = []string{}
	}
	for _, d := range departments {
		if _, err := s.store.Department(ctx, d); err != nil {
			return cell.User{}, cell.Errorf(cell.EInvalid, "department %q does not exist", d)
		}
	}
	if _, err := s.store.User(ctx, id); err != nil {
		return cell.User{}, err
	}
	if err := s.store.SetUserRouting(ctx, id, departments, capacity); err != nil {
		return cell.User{}, err
	}
	s.forgetUser(id)
	s.ReauthorizeRooms(ctx, id)
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "agent.routing", Target: id, Outcome: cell.OutcomeOK,
		Detail: "departments " + strings.Join(departments, ",")})
	s.kickRouting()
	return s.store.User(ctx, id)
}

// unassignAll puts every active chat of a disabled or removed agent back in the queue.
func (s *Service) unassignAll(ctx context.Context, agentID string, actor cell.Author) {
	chats, err := s.store.ChatsByStatus(ctx, cell.ChatActive)
	if err != nil {
		s.log.Warn("unassign: chats not read", "agentId", agentID, "error", err)
		return
	}
	for _, c := range chats {
		if c.AgentID != agentID {
			continue
		}
		var slot string
		out, err := s.mutateChat(ctx, c.ID, func(c *cell.Chat) error {
			if c.Status != cell.ChatActive || c.AgentID != agentID {
				return cell.Errorf(cell.EConflict, "moved on")
			}
			slot = c.SlotID
			c.History = append(c.History, cell.ChatTransition{Type: cell.TransitionUnassigned, From: c.Status, To: cell.ChatQueued, Actor: actor, At: s.now(), DepartmentID: c.DepartmentID})
			c.Status, c.AgentID, c.AgentName, c.SlotID = cell.ChatQueued, "", "", ""
			return nil
		})
		if err != nil {
			continue
		}
		if slot != "" {
			_ = s.store.Release(ctx, slot, c.ID)
		}
		s.afterReassign(ctx, out, agentID)
		s.publishChat("chat.queued", out)
	}
	s.kickRouting()
}

// shortcutPattern is what a canned response shortcut looks like (typed after "/").
var shortcutPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// CannedResponses lists the tenant's canned responses (staff).
func (s *Service) CannedResponses(ctx context.Context, p cell.Principal) ([]cell.CannedResponse, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	return s.store.CannedResponses(ctx)
}

// CreateCanned adds a canned response (tenant-admins): shortcut 1–32 of a-z 0-9 _ -, unique;
// title ≤ 80 characters; body 1–MaxBodyChars characters.
func (s *Service) CreateCanned(ctx context.Context, p cell.Principal, shortcut, title, body string) (cell.CannedResponse, error) {
	if err := requireAdmin(p); err != nil {
		return cell.CannedResponse{}, err
	}
	shortcut = strings.ToLower(strings.TrimSpace(shortcut))
	if !shortcutPattern.MatchString(shortcut) {
		return cell.CannedResponse{}, cell.Errorf(cell.EInvalid, "shortcut must be 1-32 of a-z 0-9 _ - (starting with a letter or digit)")
	}
	body = strings.TrimSpace(body)
	if body == "" {
		return cell.CannedResponse{}, cell.Errorf(cell.EInvalid, "body is required")
	}
	if err := validText("body", body, MaxBodyChars); err != nil {
		return cell.CannedResponse{}, err
	}
	if err := validText("title", title, 80); err != nil {
		return cell.CannedResponse{}, err
	}
	c := cell.CannedResponse{ID: auth.RandomID(), Shortcut: shortcut, Title: strings.TrimSpace(title), Body: body, CreatedAt: s.now()}
	if err := s.store.CreateCanned(ctx, &c); err != nil {
		return cell.CannedResponse{}, err
	}
	return c, nil
}

// DeleteCanned removes a canned response (tenant-admins).
func (s *Service) DeleteCanned(ctx context.Context, p cell.Principal, id string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	return s.store.DeleteCanned(ctx, id)
}

// LeaveOfflineMessage stores what a visitor wrote in the offline form: name ≤ 100, a valid
// email, message 1–MaxBodyChars characters.
func (s *Service) LeaveOfflineMessage(ctx context.Context, p cell.Principal, name, email, message string) (cell.OfflineMessage, error) {
	if err := requireVisitor(p); err != nil {
		return cell.OfflineMessage{}, err
	}
	name, email, message = strings.TrimSpace(name), strings.TrimSpace(email), strings.TrimSpace(message)
	if err := validText("name", name, 100); err != nil {
		return cell.OfflineMessage{}, err
	}
	if !emailPattern.MatchString(email) || len(email) > 254 {
		return cell.OfflineMessage{}, cell.Errorf(cell.EInvalid, "email must be a valid address, so we can answer")
	}
	if message == "" {
		return cell.OfflineMessage{}, cell.Errorf(cell.EInvalid, "message is required")
	}
	if err := validText("message", message, MaxBodyChars); err != nil {
		return cell.OfflineMessage{}, err
	}
	m := cell.OfflineMessage{ID: auth.RandomID(), VisitorID: p.Subject, Name: name, Email: email, Message: message, CreatedAt: s.now()}
	if err := s.store.InsertOfflineMessage(ctx, &m); err != nil {
		return cell.OfflineMessage{}, err
	}
	return m, nil
}

// OfflineMessages lists the newest 200 offline messages (staff).
func (s *Service) OfflineMessages(ctx context.Context, p cell.Principal) ([]cell.OfflineMessage, error) {
	if err := requireStaff(p); err != nil {
		return nil, err
	}
	return s.store.OfflineMessages(ctx, 200)
}

// emailPattern is a pragmatic address check (one @, a dot in the domain, no spaces); the
// definitive check is the mail that is sent.
var emailPattern = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// DeliveryLog reads the webhook delivery log (package webhook), newest first.
type DeliveryLog func(ctx context.Context, limit int) (any, error)

// SetDeliveryLog connects the webhook delivery log; nil (the default) answers an empty log.
func (s *Service) SetDeliveryLog(l DeliveryLog) { s.deliveries = l }

// WebhookDeliveries returns the newest 100 webhook delivery attempts (tenant-admins).
func (s *Service) WebhookDeliveries(ctx context.Context, p cell.Principal) (any, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	if s.deliveries == nil {
		return map[string]any{"deliveries": []any{}}, nil
	}
	return s.deliveries(ctx, 100)
}

// Agent returns one user of the tenant (tenant-admins).
func (s *Service) Agent(ctx context.Context, p cell.Principal, id string) (cell.User, error) {
	if err := requireAdmin(p); err != nil {
		return cell.User{}, err
	}
	return s.store.User(ctx, id)
}
