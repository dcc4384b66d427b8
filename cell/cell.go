// Package cell holds the vocabulary of one tenant's chat server (a cell): chats (conversations),
// messages, agents and tenant-admins (users), visitors, attachments and the error type every
// layer speaks. Sub-packages wrap one technology each: mongodb (stores), s3blob (attachments),
// auth (tokens and passwords), realtime (WebSocket rooms), service (the use cases), web (HTTP).
package cell

import "time"

// Role names carried in tokens (`roles` claim) and on users.
const (
	RoleVisitor     = "visitor"
	RoleAgent       = "agent"
	RoleTenantAdmin = "tenant-admin"
	RoleSuperAdmin  = "super-admin"
)

// ChatStatus is where a chat is in its lifecycle: queued → active → resolved.
type ChatStatus string

// Chat statuses.
const (
	// ChatQueued is a chat waiting in the tenant's queue for an agent to accept it.
	ChatQueued ChatStatus = "queued"
	// ChatActive is a chat accepted by exactly one agent.
	ChatActive ChatStatus = "active"
	// ChatResolved is a closed chat; the visitor's next chat is a new one.
	ChatResolved ChatStatus = "resolved"
)

// Valid reports whether s is a known chat status.
func (s ChatStatus) Valid() bool {
	return s == ChatQueued || s == ChatActive || s == ChatResolved
}

// User is a tenant-admin or agent of the tenant. PasswordHash is a bcrypt hash and never leaves
// the cell (it is not serialised to JSON).
type User struct {
	ID           string    `json:"id" bson:"_id"`
	TenantID     string    `json:"-" bson:"tenantId"`
	Email        string    `json:"email" bson:"email"`
	Name         string    `json:"name" bson:"name"`
	Roles        []string  `json:"roles" bson:"roles"`
	PasswordHash string    `json:"-" bson:"passwordHash"`
	Disabled     bool      `json:"disabled,omitempty" bson:"disabled,omitempty"`
	CreatedAt    time.Time `json:"createdAt" bson:"createdAt"`
}

// HasRole reports whether the user holds role.
func (u User) HasRole(role string) bool { return hasRole(u.Roles, role) }

// Visitor is an anonymous (or self-named) person chatting through the widget.
type Visitor struct {
	ID        string    `json:"id" bson:"_id"`
	TenantID  string    `json:"-" bson:"tenantId"`
	Name      string    `json:"name" bson:"name"`
	Email     string    `json:"email,omitempty" bson:"email,omitempty"`
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
}

// Chat is one conversation between a visitor and (once accepted) one agent. LastSeq is the seq of
// the newest message; message seqs of a chat are 1..LastSeq without gaps.
type Chat struct {
	ID         string     `json:"id" bson:"_id"`
	TenantID   string     `json:"-" bson:"tenantId"`
	Status     ChatStatus `json:"status" bson:"status"`
	VisitorID  string     `json:"visitorId" bson:"visitorId"`
	Visitor    Visitor    `json:"visitor" bson:"visitor"`
	AgentID    string     `json:"agentId,omitempty" bson:"agentId,omitempty"`
	AgentName  string     `json:"agentName,omitempty" bson:"agentName,omitempty"`
	CreatedAt  time.Time  `json:"createdAt" bson:"createdAt"`
	AcceptedAt *time.Time `json:"acceptedAt,omitempty" bson:"acceptedAt,omitempty"`
	ResolvedAt *time.Time `json:"resolvedAt,omitempty" bson:"resolvedAt,omitempty"`
	LastSeq    int64      `json:"lastSeq" bson:"lastSeq"`
	Preview    string     `json:"preview" bson:"preview"`
	// OpenKey is set only while the chat is open (queued or active); a sparse unique index on it
	// keeps at most one open chat per visitor.
	OpenKey string `json:"-" bson:"openKey,omitempty"`
}

// Author is who wrote a message, as shown to the other side.
type Author struct {
	Role string `json:"role" bson:"role"`
	ID   string `json:"id" bson:"id"`
	Name string `json:"name" bson:"name"`
}

// AttachmentRef is the part of an attachment a message carries.
type AttachmentRef struct {
	ID          string `json:"id" bson:"id"`
	Filename    string `json:"filename" bson:"filename"`
	ContentType string `json:"contentType" bson:"contentType"`
	Size        int64  `json:"size" bson:"size"`
}

// Message is one chat message. Seq is assigned by the server per chat (1, 2, 3 … without gaps);
// ClientMsgID is chosen by the client so a retried send stores nothing new.
type Message struct {
	ID          string         `json:"id" bson:"_id"`
	TenantID    string         `json:"-" bson:"tenantId"`
	ChatID      string         `json:"chatId" bson:"chatId"`
	Seq         int64          `json:"seq" bson:"seq"`
	ClientMsgID string         `json:"clientMsgId" bson:"clientMsgId"`
	From        Author         `json:"from" bson:"from"`
	Body        string         `json:"body" bson:"body"`
	Attachment  *AttachmentRef `json:"attachment,omitempty" bson:"attachment,omitempty"`
	CreatedAt   time.Time      `json:"createdAt" bson:"createdAt"`
}

// Attachment is a file uploaded to a chat through a presigned PUT. Key is server-generated under
// the tenant's prefix: "t/<tenantId>/c/<chatId>/<random>".
type Attachment struct {
	ID          string    `json:"id" bson:"_id"`
	TenantID    string    `json:"-" bson:"tenantId"`
	ChatID      string    `json:"chatId" bson:"chatId"`
	Key         string    `json:"-" bson:"key"`
	Filename    string    `json:"filename" bson:"filename"`
	ContentType string    `json:"contentType" bson:"contentType"`
	Size        int64     `json:"size" bson:"size"`
	UploadedBy  Author    `json:"uploadedBy" bson:"uploadedBy"`
	CreatedAt   time.Time `json:"createdAt" bson:"createdAt"`
}

// Ref returns the reference a message carries for the attachment.
func (a Attachment) Ref() *AttachmentRef {
	return &AttachmentRef{ID: a.ID, Filename: a.Filename, ContentType: a.ContentType, Size: a.Size}
}

// Session is one refresh-token family of a user (RFC 6819 §5.2.2.3 rotation): each refresh
// replaces CurrentJTI; presenting any older jti revokes the family.
type Session struct {
	ID         string    `bson:"_id"`
	TenantID   string    `bson:"tenantId"`
	UserID     string    `bson:"userId"`
	CurrentJTI string    `bson:"currentJti"`
	Revoked    bool      `bson:"revoked"`
	CreatedAt  time.Time `bson:"createdAt"`
	ExpiresAt  time.Time `bson:"expiresAt"`
}

// Principal is the authenticated caller of a request or WebSocket frame, taken from a verified
// token: Subject is the user or visitor id, SessionID the token's `sid`.
type Principal struct {
	Subject   string
	TenantID  string
	Roles     []string
	Name      string
	SessionID string
}

// HasRole reports whether the principal holds role.
func (p Principal) HasRole(role string) bool { return hasRole(p.Roles, role) }

// IsStaff reports whether the principal is an agent or a tenant-admin.
func (p Principal) IsStaff() bool { return p.HasRole(RoleAgent) || p.HasRole(RoleTenantAdmin) }

// Author returns the principal as a message author.
func (p Principal) Author() Author {
	role := RoleAgent
	if p.HasRole(RoleVisitor) {
		role = RoleVisitor
	}
	return Author{Role: role, ID: p.Subject, Name: p.Name}
}

func hasRole(roles []string, role string) bool {
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// Audit outcomes.
const (
	OutcomeOK     = "ok"
	OutcomeDenied = "denied"
	OutcomeFailed = "failed"
)

// AuditEntry records who did what to which target, when, from where and how it ended: logins,
// role and agent changes, settings changes, exports, and every denied cross-tenant or
// unauthorized attempt. Detail never holds secrets or message bodies.
type AuditEntry struct {
	ID       string    `json:"id" bson:"_id"`
	TenantID string    `json:"-" bson:"tenantId"`
	At       time.Time `json:"at" bson:"at"`
	Actor    Author    `json:"actor" bson:"actor"`
	Action   string    `json:"action" bson:"action"`
	Target   string    `json:"target,omitempty" bson:"target,omitempty"`
	Outcome  string    `json:"outcome" bson:"outcome"`
	IP       string    `json:"ip,omitempty" bson:"ip,omitempty"`
	Detail   string    `json:"detail,omitempty" bson:"detail,omitempty"`
}
