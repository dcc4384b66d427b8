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

// ChatStatus is where a chat is in its lifecycle: queued → active → resolved, or queued →
// abandoned when the visitor leaves (or the abandonment timeout passes) before any agent accepts.
// A resolved or abandoned chat is reopened (back to queued) when its visitor writes again within
// the tenant's reopen window; after it, the visitor's next message starts a new chat.
type ChatStatus string

// Chat statuses.
const (
	// ChatQueued is a chat waiting in the tenant's queue for an agent to accept it.
	ChatQueued ChatStatus = "queued"
	// ChatActive is a chat accepted by exactly one agent.
	ChatActive ChatStatus = "active"
	// ChatResolved is a closed chat (by the agent, an admin, the visitor or inactivity).
	ChatResolved ChatStatus = "resolved"
	// ChatAbandoned is a chat closed before any agent accepted it.
	ChatAbandoned ChatStatus = "abandoned"
)

// Valid reports whether s is a known chat status.
func (s ChatStatus) Valid() bool {
	return s == ChatQueued || s == ChatActive || s == ChatResolved || s == ChatAbandoned
}

// Open reports whether a chat in status s still takes messages (queued or active).
func (s ChatStatus) Open() bool { return s == ChatQueued || s == ChatActive }

// Chat transition types recorded in Chat.History (and the realtime/webhook event names derive
// from them: "chat.<type>").
const (
	TransitionCreated     = "created"
	TransitionAccepted    = "accepted"
	TransitionAssigned    = "assigned" // by auto routing
	TransitionTransferred = "transferred"
	TransitionResolved    = "resolved"
	TransitionAbandoned   = "abandoned"
	TransitionReopened    = "reopened"
	TransitionUnassigned  = "unassigned" // the agent was disabled or removed: back to the queue
)

// ChatTransition is one lifecycle event of a chat: what happened, from which status to which,
// who did it (Actor.Role "system" for timers and auto routing) and when. AgentID and
// DepartmentID are the assignment after the event; Note is a transfer's note (staff only).
type ChatTransition struct {
	Type         string     `json:"type" bson:"type"`
	From         ChatStatus `json:"from,omitempty" bson:"from,omitempty"`
	To           ChatStatus `json:"to" bson:"to"`
	Actor        Author     `json:"actor" bson:"actor"`
	At           time.Time  `json:"at" bson:"at"`
	AgentID      string     `json:"agentId,omitempty" bson:"agentId,omitempty"`
	DepartmentID string     `json:"departmentId,omitempty" bson:"departmentId,omitempty"`
	Note         string     `json:"note,omitempty" bson:"note,omitempty"`
}

// CSAT is a visitor's satisfaction rating of a resolved chat: Score 1 (worst) to 5 (best).
type CSAT struct {
	Score   int       `json:"score" bson:"score"`
	Comment string    `json:"comment,omitempty" bson:"comment,omitempty"`
	At      time.Time `json:"at" bson:"at"`
}

// Department groups agents; chats routed to a department are seen only by its agents (and
// tenant-admins). Routing is RoutingManual or RoutingAuto; empty means the tenant's setting.
type Department struct {
	ID        string    `json:"id" bson:"_id"`
	TenantID  string    `json:"-" bson:"tenantId"`
	Name      string    `json:"name" bson:"name"`
	Routing   string    `json:"routing,omitempty" bson:"routing,omitempty"`
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
}

// Routing modes.
const (
	// RoutingManual: queued chats wait in a shared queue until an agent accepts one.
	RoutingManual = "manual"
	// RoutingAuto: a queued chat is assigned to the least-busy online agent of its department
	// who has free capacity; it waits in the queue only while none has.
	RoutingAuto = "auto"
)

// CannedResponse is a tenant's saved reply, inserted by agents with "/<shortcut>".
type CannedResponse struct {
	ID        string    `json:"id" bson:"_id"`
	TenantID  string    `json:"-" bson:"tenantId"`
	Shortcut  string    `json:"shortcut" bson:"shortcut"`
	Title     string    `json:"title" bson:"title"`
	Body      string    `json:"body" bson:"body"`
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
}

// OfflineMessage is what a visitor leaves through the offline form when no agent is online or the
// tenant is outside its business hours.
type OfflineMessage struct {
	ID        string    `json:"id" bson:"_id"`
	TenantID  string    `json:"-" bson:"tenantId"`
	VisitorID string    `json:"visitorId" bson:"visitorId"`
	Name      string    `json:"name" bson:"name"`
	Email     string    `json:"email" bson:"email"`
	Message   string    `json:"message" bson:"message"`
	CreatedAt time.Time `json:"createdAt" bson:"createdAt"`
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
	// Departments are the ids of the departments the agent belongs to; an agent with none sees
	// only chats without a department.
	Departments []string `json:"departments" bson:"departments"`
	// Capacity is the most chats the agent may have active at once; 0 means the tenant's default.
	Capacity int `json:"capacity,omitempty" bson:"capacity,omitempty"`
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
	// LastChatID is the visitor's newest chat, so a new message after a resolve can reopen it
	// within the tenant's reopen window (a point read instead of a scan).
	LastChatID string `json:"-" bson:"lastChatId,omitempty"`
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
	// DepartmentID routes the chat; empty is the tenant's general queue.
	DepartmentID string `json:"departmentId,omitempty" bson:"departmentId,omitempty"`
	// Labels are the tenant's tags on the chat (lowercase, at most MaxLabels).
	Labels []string `json:"labels" bson:"labels"`
	// Assignment counts the chat's assignments (accepts, auto assignments, transfers); the claim
	// deciding the next one is "assign:<chatId>:<Assignment+1>", so exactly one wins each round.
	Assignment int `json:"assignment" bson:"assignment"`
	// SlotID is the capacity slot the assigned agent holds for this chat (see store ClaimSlot).
	SlotID string `json:"-" bson:"slotId,omitempty"`
	// FirstResponseAt is the time of the first agent message after the first accept (FRT).
	FirstResponseAt *time.Time `json:"firstResponseAt,omitempty" bson:"firstResponseAt,omitempty"`
	// LastActivityAt is the time of the newest message (or of creation), for inactivity timers.
	LastActivityAt time.Time `json:"lastActivityAt" bson:"lastActivityAt"`
	// ClosedAt is when the chat was last resolved or abandoned.
	ClosedAt *time.Time `json:"closedAt,omitempty" bson:"closedAt,omitempty"`
	// VisitorReadSeq and AgentReadSeq are the read receipts: the highest seq each side has read.
	VisitorReadSeq int64 `json:"visitorReadSeq" bson:"visitorReadSeq"`
	AgentReadSeq   int64 `json:"agentReadSeq" bson:"agentReadSeq"`
	// CSAT is the visitor's rating, given once after the chat was resolved.
	CSAT *CSAT `json:"csat,omitempty" bson:"csat,omitempty"`
	// History lists every lifecycle transition, oldest first.
	History []ChatTransition `json:"history" bson:"history"`
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
	// Private marks a note: staff only, never sent to the visitor, in their history, transcript
	// or webhooks. Notes have their own seq stream (1, 2, 3 … per chat), stored apart from
	// messages, so the visitor's seqs stay gapless.
	Private bool `json:"private,omitempty" bson:"private,omitempty"`
}

// SystemActor is the author of transitions made by timers and auto routing.
var SystemActor = Author{Role: "system", ID: "system", Name: "Atende"}

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
