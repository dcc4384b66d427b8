package service

import (
	"context"
	"strings"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/realtime"
)

// Tokens is the answer to a login or refresh. ExpiresIn is the access token lifetime in ms.
type Tokens struct {
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken"`
	ExpiresIn    int64     `json:"expiresIn"`
	User         cell.User `json:"user"`
}

// Login checks email and password and starts a session. Unknown email, wrong password and a
// disabled user all answer the same unauthorized error after the same bcrypt work.
func (s *Service) Login(ctx context.Context, email, password string) (Tokens, error) {
	bad := cell.Errorf(cell.EUnauthorized, "wrong email or password")
	denied := func() (Tokens, error) {
		s.Audit(ctx, cell.AuditEntry{Actor: cell.Author{Role: "anonymous"}, Action: "auth.login", Target: strings.ToLower(strings.TrimSpace(email)), Outcome: cell.OutcomeDenied})
		return Tokens{}, bad
	}
	u, err := s.store.UserByEmail(ctx, strings.TrimSpace(email))
	if cell.ErrorCode(err) == cell.ENotFound {
		auth.BurnPasswordCheck(password)
		return denied()
	}
	if err != nil {
		return Tokens{}, err
	}
	if !auth.CheckPassword(u.PasswordHash, password) || u.Disabled {
		return denied()
	}
	sess := cell.Session{ID: auth.RandomID(), UserID: u.ID, CreatedAt: s.now(), ExpiresAt: s.now().Add(auth.RefreshTTL)}
	tokens, err := s.issuePair(ctx, u, &sess, true)
	if err == nil {
		s.Audit(ctx, cell.AuditEntry{Actor: cell.Author{Role: strings.Join(u.Roles, ","), ID: u.ID, Name: u.Name}, Action: "auth.login", Target: u.ID, Outcome: cell.OutcomeOK})
	}
	return tokens, err
}

// issuePair signs an access and a refresh token for u in sess and records the refresh token's
// jti as the session's current one (inserting the session when isNew).
func (s *Service) issuePair(ctx context.Context, u cell.User, sess *cell.Session, isNew bool) (Tokens, error) {
	access, err := s.auth.Issue(auth.Grant{Type: auth.TypeAccess, Subject: u.ID, Roles: u.Roles, Name: u.Name, Sid: sess.ID, TTL: auth.AccessTTL})
	if err != nil {
		return Tokens{}, err
	}
	refresh, err := s.auth.Issue(auth.Grant{Type: auth.TypeRefresh, Subject: u.ID, Roles: u.Roles, Name: u.Name, Sid: sess.ID, TTL: auth.RefreshTTL})
	if err != nil {
		return Tokens{}, err
	}
	sess.CurrentJTI = refresh.JTI
	if isNew {
		err = s.store.InsertSession(ctx, sess)
	} else {
		err = s.store.SetSessionJTI(ctx, sess.ID, refresh.JTI)
	}
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{AccessToken: access.Token, RefreshToken: refresh.Token, ExpiresIn: auth.AccessTTL.Milliseconds(), User: u}, nil
}

// Refresh rotates a refresh token (RFC 6819 §5.2.2.3): it answers a new pair, and presenting a
// token that was already rotated revokes the whole session family.
func (s *Service) Refresh(ctx context.Context, token string) (Tokens, error) {
	claims, err := s.auth.Verify(token, auth.TypeRefresh)
	if err != nil {
		return Tokens{}, err
	}
	denied := cell.Errorf(cell.EUnauthorized, "session ended; log in again")
	sess, err := s.store.Session(ctx, claims.Sid)
	if err != nil || sess.Revoked || sess.UserID != claims.Subject {
		return Tokens{}, denied
	}
	// Exactly one refresh per token: the claim document arbitrates concurrent or replayed use.
	if _, won, err := s.store.Claim(ctx, "refresh:"+claims.ID, claims.Subject); err != nil {
		return Tokens{}, err
	} else if !won || sess.CurrentJTI != claims.ID {
		_ = s.store.RevokeSession(ctx, sess.ID)
		s.log.Warn("refresh token reuse; session family revoked", "sessionId", sess.ID)
		s.Audit(ctx, cell.AuditEntry{Actor: cell.Author{Role: cell.RoleAgent, ID: claims.Subject}, Action: "auth.refresh-reuse", Target: sess.ID, Outcome: cell.OutcomeDenied, Detail: "session family revoked"})
		return Tokens{}, denied
	}
	u, err := s.store.User(ctx, claims.Subject)
	if err != nil || u.Disabled {
		return Tokens{}, denied
	}
	return s.issuePair(ctx, u, &sess, false)
}

// Logout revokes the caller's session: its access and refresh tokens stop working at once and
// its open WebSockets are closed.
func (s *Service) Logout(ctx context.Context, p cell.Principal) error {
	if p.SessionID == "" {
		return nil
	}
	err := s.store.RevokeSession(ctx, p.SessionID)
	if cell.ErrorCode(err) == cell.ENotFound {
		err = nil
	}
	s.hub.Disconnect(func(c *realtime.Client) bool { return c.SessionID == p.SessionID }, "logged out")
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "auth.logout", Target: p.SessionID, Outcome: cell.OutcomeOK})
	return err
}

// Me returns the calling user.
func (s *Service) Me(ctx context.Context, p cell.Principal) (cell.User, error) {
	if err := requireStaff(p); err != nil {
		return cell.User{}, err
	}
	return s.store.User(ctx, p.Subject)
}

// Authenticate verifies a bearer token of one of types and returns its principal. A staff token
// (one with a session) is also checked against its session, so logout, password change and agent
// removal end it at once, not when it expires.
func (s *Service) Authenticate(ctx context.Context, token string, types ...string) (cell.Principal, error) {
	claims, err := s.auth.Verify(token, types...)
	if err != nil {
		return cell.Principal{}, err
	}
	p := claims.Principal()
	if err := s.checkSession(ctx, p); err != nil {
		return cell.Principal{}, err
	}
	return p, nil
}

// checkSession refuses a principal whose session was revoked or has expired.
func (s *Service) checkSession(ctx context.Context, p cell.Principal) error {
	if p.SessionID == "" {
		return nil // visitors and control-plane tokens carry no session
	}
	sess, err := s.store.Session(ctx, p.SessionID)
	if cell.ErrorCode(err) == cell.ENotFound || (err == nil && (sess.Revoked || sess.UserID != p.Subject || s.now().After(sess.ExpiresAt))) {
		return cell.Errorf(cell.EUnauthorized, "session ended; log in again")
	}
	return err
}

// VisitorSession is a new visitor and the token the widget uses. ExpiresIn is in ms.
type VisitorSession struct {
	VisitorToken string `json:"visitorToken"`
	VisitorID    string `json:"visitorId"`
	ExpiresIn    int64  `json:"expiresIn"`
}

// NewVisitorSession creates a visitor (name defaults to "Visitor") and signs its token.
func (s *Service) NewVisitorSession(ctx context.Context, name, email string) (VisitorSession, error) {
	name = strings.TrimSpace(name)
	if err := validText("name", name, 100); err != nil {
		return VisitorSession{}, err
	}
	if name == "" {
		name = "Visitor"
	}
	v := cell.Visitor{ID: auth.RandomID(), Name: name, Email: strings.TrimSpace(email), CreatedAt: s.now()}
	if err := s.store.CreateVisitor(ctx, &v); err != nil {
		return VisitorSession{}, err
	}
	tok, err := s.auth.Issue(auth.Grant{Type: auth.TypeVisitor, Subject: v.ID, Roles: []string{cell.RoleVisitor}, Name: v.Name, TTL: auth.VisitorTTL})
	if err != nil {
		return VisitorSession{}, err
	}
	return VisitorSession{VisitorToken: tok.Token, VisitorID: v.ID, ExpiresIn: auth.VisitorTTL.Milliseconds()}, nil
}

// Ticket is a single-use WebSocket ticket. ExpiresIn is in ms.
type Ticket struct {
	Ticket    string `json:"ticket"`
	ExpiresIn int64  `json:"expiresIn"`
}

// NewTicket signs a short-lived single-use ticket carrying the caller's identity, so browsers
// need not put long-lived tokens in WebSocket URLs.
func (s *Service) NewTicket(p cell.Principal) (Ticket, error) {
	if p.HasRole(cell.RoleSuperAdmin) {
		return Ticket{}, cell.Errorf(cell.EForbidden, "super-admin tokens do not open chat sockets")
	}
	tok, err := s.auth.Issue(auth.Grant{Type: auth.TypeWSTicket, Subject: p.Subject, Roles: p.Roles, Name: p.Name, Sid: p.SessionID, TTL: auth.WSTicketTTL})
	if err != nil {
		return Ticket{}, err
	}
	return Ticket{Ticket: tok.Token, ExpiresIn: auth.WSTicketTTL.Milliseconds()}, nil
}

// RedeemTicket verifies a ticket and spends it: a second use is refused.
func (s *Service) RedeemTicket(ctx context.Context, ticket string) (cell.Principal, error) {
	claims, err := s.auth.Verify(ticket, auth.TypeWSTicket)
	if err != nil {
		return cell.Principal{}, err
	}
	if _, won, err := s.store.Claim(ctx, "ticket:"+claims.ID, claims.Subject); err != nil {
		return cell.Principal{}, err
	} else if !won {
		return cell.Principal{}, cell.Errorf(cell.EUnauthorized, "ticket already used")
	}
	p := claims.Principal()
	if err := s.checkSession(ctx, p); err != nil {
		return cell.Principal{}, err
	}
	return p, nil
}

// AgentCreated is a new agent and, when the server generated it, its password (shown once).
type AgentCreated struct {
	Agent    cell.User `json:"agent"`
	Password string    `json:"password,omitempty"`
}

// ListAgents returns the tenant's users (tenant-admin only).
func (s *Service) ListAgents(ctx context.Context, p cell.Principal) ([]cell.User, error) {
	if err := requireAdmin(p); err != nil {
		return nil, err
	}
	return s.store.ListUsers(ctx)
}

// CreateAgent adds a user with roles (default ["agent"]; allowed: agent, tenant-admin). A missing
// password is generated (20 characters). Duplicate email → conflict.
func (s *Service) CreateAgent(ctx context.Context, p cell.Principal, email, name, password string, roles []string) (AgentCreated, error) {
	if err := requireAdmin(p); err != nil {
		return AgentCreated{}, err
	}
	if len(roles) == 0 {
		roles = []string{cell.RoleAgent}
	}
	for _, r := range roles {
		if r != cell.RoleAgent && r != cell.RoleTenantAdmin {
			return AgentCreated{}, cell.Errorf(cell.EInvalid, "role %q is not allowed (agent, tenant-admin)", r)
		}
	}
	if err := validText("name", name, 100); err != nil {
		return AgentCreated{}, err
	}
	generated := ""
	if password == "" {
		password = auth.RandomPassword(20)
		generated = password
	} else if len(password) < 8 {
		return AgentCreated{}, cell.Errorf(cell.EInvalid, "password must have at least 8 characters")
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return AgentCreated{}, err
	}
	if strings.TrimSpace(name) == "" {
		name = strings.Split(email, "@")[0]
	}
	u := cell.User{ID: auth.RandomID(), Email: strings.TrimSpace(email), Name: strings.TrimSpace(name), Roles: roles, PasswordHash: hash, CreatedAt: s.now()}
	// The count and the insert run under one lock so concurrent creates cannot pass the plan's
	// limit together (one cell process serves a tenant).
	s.agentsMu.Lock()
	defer s.agentsMu.Unlock()
	if s.cfg.MaxAgents > 0 {
		users, err := s.store.ListUsers(ctx)
		if err != nil {
			return AgentCreated{}, err
		}
		if len(users) >= s.cfg.MaxAgents {
			return AgentCreated{}, cell.Errorf(cell.EForbidden, "the tenant's plan allows at most %d users; remove one or change plan", s.cfg.MaxAgents)
		}
	}
	if err := s.store.CreateUser(ctx, &u); err != nil {
		if cell.ErrorCode(err) == cell.EConflict {
			return AgentCreated{}, cell.Errorf(cell.EConflict, "a user with email %s already exists", u.Email)
		}
		return AgentCreated{}, err
	}
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "agent.create", Target: u.ID, Outcome: cell.OutcomeOK, Detail: "roles " + strings.Join(u.Roles, ",")})
	return AgentCreated{Agent: u, Password: generated}, nil
}

// DeleteAgent removes a user (tenant-admin only; not oneself).
func (s *Service) DeleteAgent(ctx context.Context, p cell.Principal, id string) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	if id == p.Subject {
		return cell.Errorf(cell.EInvalid, "you cannot remove yourself")
	}
	if _, err := s.store.User(ctx, id); err != nil {
		return err
	}
	// End what the user holds first (sessions, so their tokens stop working), then remove them:
	// a failure in between leaves a user who must log in again, never a removed one still in.
	if err := s.store.RevokeUserSessions(ctx, id); err != nil {
		return err
	}
	if err := s.store.DeleteUser(ctx, id); err != nil {
		return err
	}
	s.hub.Disconnect(func(c *realtime.Client) bool { return c.Subject == id }, "account removed")
	s.forgetUser(id)
	s.unassignAll(ctx, id, p.Author())
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "agent.delete", Target: id, Outcome: cell.OutcomeOK})
	return nil
}

// PublicSettings is what the widget and console show before login.
type PublicSettings struct {
	TenantID string        `json:"tenantId"`
	Key      string        `json:"key"`
	Name     string        `json:"name"`
	Branding cell.Branding `json:"branding"`
	// BusinessHours lets the widget show when chats open again.
	BusinessHours cell.BusinessHours `json:"businessHours"`
}

// PublicSettings returns the tenant's public settings.
func (s *Service) PublicSettings(ctx context.Context) PublicSettings {
	name := s.cfg.TenantName
	if name == "" {
		name = s.cfg.TenantKey
	}
	st := s.settings(ctx)
	return PublicSettings{TenantID: s.cfg.TenantID, Key: s.cfg.TenantKey, Name: name, Branding: st.Branding, BusinessHours: st.BusinessHours}
}

// ChangePassword replaces the caller's password after checking the current one. Every session of
// the user ends (tokens refused, sockets closed) and a fresh session is returned, so only the
// device that changed the password stays logged in.
func (s *Service) ChangePassword(ctx context.Context, p cell.Principal, current, next string) (Tokens, error) {
	if err := requireStaff(p); err != nil {
		return Tokens{}, err
	}
	u, err := s.store.User(ctx, p.Subject)
	if err != nil {
		return Tokens{}, err
	}
	if !auth.CheckPassword(u.PasswordHash, current) {
		s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "auth.password", Target: u.ID, Outcome: cell.OutcomeDenied, Detail: "wrong current password"})
		return Tokens{}, cell.Errorf(cell.EUnauthorized, "the current password is wrong")
	}
	if len(next) < 8 {
		return Tokens{}, cell.Errorf(cell.EInvalid, "the new password must have at least 8 characters")
	}
	hash, err := auth.HashPassword(next)
	if err != nil {
		return Tokens{}, err
	}
	if err := s.store.RevokeUserSessions(ctx, u.ID); err != nil {
		return Tokens{}, err
	}
	if err := s.store.SetUserPassword(ctx, u.ID, hash); err != nil {
		return Tokens{}, err
	}
	s.hub.Disconnect(func(c *realtime.Client) bool { return c.Subject == u.ID }, "password changed")
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: "auth.password", Target: u.ID, Outcome: cell.OutcomeOK})
	sess := cell.Session{ID: auth.RandomID(), UserID: u.ID, CreatedAt: s.now(), ExpiresAt: s.now().Add(auth.RefreshTTL)}
	return s.issuePair(ctx, u, &sess, true)
}

// SetAgentDisabled disables (or re-enables) a user, tenant-admin only and not oneself. Disabling
// ends every session of the user and closes their sockets at once.
func (s *Service) SetAgentDisabled(ctx context.Context, p cell.Principal, id string, disabled bool) (cell.User, error) {
	if err := requireAdmin(p); err != nil {
		return cell.User{}, err
	}
	if id == p.Subject {
		return cell.User{}, cell.Errorf(cell.EInvalid, "you cannot disable yourself")
	}
	if _, err := s.store.User(ctx, id); err != nil {
		return cell.User{}, err
	}
	if disabled {
		if err := s.store.RevokeUserSessions(ctx, id); err != nil {
			return cell.User{}, err
		}
	}
	if err := s.store.SetUserDisabled(ctx, id, disabled); err != nil {
		return cell.User{}, err
	}
	s.forgetUser(id)
	if disabled {
		s.hub.Disconnect(func(c *realtime.Client) bool { return c.Subject == id }, "account disabled")
		s.unassignAll(ctx, id, p.Author())
	}
	action := "agent.enable"
	if disabled {
		action = "agent.disable"
	}
	s.Audit(ctx, cell.AuditEntry{Actor: p.Author(), Action: action, Target: id, Outcome: cell.OutcomeOK})
	return s.store.User(ctx, id)
}
