// Package service holds a cell's use cases: login and tokens, visitor sessions, the chat lifecycle
// (open, queue, accept exactly once, resolve), messages with per-chat seq and idempotent
// clientMsgId, attachments and agents. HTTP handlers and WebSocket frames both call it, so a rule
// (who may do what, what is valid) lives in one place. Every change is persisted before it is
// published to the realtime hub.
package service

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/mongodb"
	"atende/cell/realtime"
	"atende/cell/s3blob"
)

// Limits on input sizes.
const (
	// MaxBodyChars is the longest message body, in characters.
	MaxBodyChars = 10000
	// MaxHistoryPage is the most messages one history or resume page returns.
	MaxHistoryPage = 500
	// DefaultHistoryPage is the page size when the caller gives none.
	DefaultHistoryPage = 100
)

// clientMsgIDPattern is what a client-chosen message id may look like (UUIDs and similar).
var clientMsgIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// Service is the use cases of one cell.
type Service struct {
	cfg   cell.Config
	store *mongodb.Store
	blob  *s3blob.Blob
	hub   *realtime.Hub
	auth  *auth.Authority
	log   *slog.Logger
	now   func() time.Time
	// dir is the open-chat directory (directory.go); dirMu serialises its refreshes.
	dir    chatDirectory
	dirMu  sync.Mutex
	seqsMu sync.Mutex
	seqs   map[string]*chatLock
	genSeq atomic.Int64 // source of chatLock generations
	// gates take turns between assignments of one chat (gateAssign), guarded by gateMu.
	gateMu sync.Mutex
	gates  map[string]*assignGate
	// behind holds the chats with a stored seq this process may not have published yet (an
	// append whose outcome was unknown); the flush tick publishes them. Guarded by seqsMu.
	behind map[string]bool
	lastMu sync.Mutex
	last   map[string]lastNote
	hintAt map[string]time.Time // when each chat's hint was last written, guarded by lastMu
	// agentsMu serialises user creation so the plan's MaxAgents holds under concurrency.
	agentsMu sync.Mutex

	usersMu sync.Mutex
	users   map[string]cachedUser
	presMu  sync.Mutex
	// presence is per process: with several replicas, each knows its own sockets (see README).
	presence   map[string]*presence
	setMu      sync.Mutex
	setCache   cell.Settings
	setAt      time.Time
	routeKick  chan struct{}
	queueMu    sync.Mutex
	lastQueue  map[string]QueueStatus
	events     EventSink
	deliveries DeliveryLog
	openMu     sync.Mutex
	openCount  int
	openAt     time.Time
}

// EventSink receives the chat events offered to the tenant's webhook (package webhook's
// Dispatcher). Publish must persist the event before returning; id is deterministic, so a
// repeated publish of one event is stored once. Private notes are never published.
type EventSink interface {
	Publish(ctx context.Context, id, typ string, at time.Time, payload any) error
}

// SetEventSink connects the webhook outbox; nil (the default) drops events.
func (s *Service) SetEventSink(e EventSink) { s.events = e }

// emit offers one event to the webhook outbox if the tenant subscribed to its type. A failure
// is logged: the chat change itself is already stored.
func (s *Service) emit(ctx context.Context, typ, id string, payload any) {
	if s.events == nil || !s.settings(ctx).Webhook.Wants(typ) {
		return
	}
	if c, ok := payload.(cell.Chat); ok { // transfer notes are staff-only, like notes
		h := make([]cell.ChatTransition, len(c.History))
		for i, t := range c.History {
			t.Note = ""
			h[i] = t
		}
		c.History, c.SlotID = h, ""
		payload = c
	}
	if err := s.events.Publish(context.WithoutCancel(ctx), id, typ, s.now(), payload); err != nil {
		s.log.Warn("webhook event not stored", "event", typ, "id", id, "error", err)
	}
}

// marshalFrame encodes a realtime frame.
func marshalFrame(v any) ([]byte, error) { return json.Marshal(v) }

// chatLock serialises, within this process, every write to one chat: message appends (and their
// seq), state changes (accept, resolve) and the lastSeq flush. FerretDB v1 applies an update as a
// read-modify-write of the whole document, so two concurrent updates of one chat would lose one;
// and a state check made outside the lock could let a message in after a resolve. Between
// processes, the unique indexes (seq, clientMsgId, accept claim) still arbitrate.
type chatLock struct {
	mu sync.Mutex
	// msgs and notes are this process's view of the chat's two seq streams.
	msgs, notes seqStream
	closed      bool  // the chat is resolved: drop the entry when unused
	gen         int64 // changes on every write of this process to the chat; guarded by Service.seqsMu
	refs        int   // holders and waiters, guarded by Service.seqsMu
}

// seqStream is what this process knows of one of a chat's seq streams (its messages or its
// notes): the highest stored seq, and the highest seq it published to its hub. Publishing is
// strictly in seq order: a seq is published only after every lower one, so a subscriber never
// sees a gap it must repair (DESIGN.md §6).
type seqStream struct {
	last   int64 // the highest stored seq, valid when loaded
	loaded bool
	// published is the highest seq published to this process's hub, valid when pubKnown. It
	// survives reloads of last: a seq stored by another replica, or by an insert of this process
	// whose answer was lost (a driver timeout while the database still committed it), is
	// published from the store before any higher one.
	published int64
	pubKnown  bool
}

// New returns the service of the cell configured by cfg.
func New(cfg cell.Config, store *mongodb.Store, blob *s3blob.Blob, hub *realtime.Hub, authority *auth.Authority, log *slog.Logger) *Service {
	return &Service{cfg: cfg, store: store, blob: blob, hub: hub, auth: authority, log: log, now: func() time.Time { return time.Now().UTC() },
		seqs: map[string]*chatLock{}, gates: map[string]*assignGate{}, behind: map[string]bool{}, last: map[string]lastNote{}, hintAt: map[string]time.Time{}, users: map[string]cachedUser{}, presence: map[string]*presence{},
		routeKick: make(chan struct{}, 1), lastQueue: map[string]QueueStatus{}}
}

// Hub returns the realtime hub the service publishes to.
func (s *Service) Hub() *realtime.Hub { return s.hub }

// ForeignReads returns how many point reads found another tenant's document (expected 0).
func (s *Service) ForeignReads() int64 { return s.store.ForeignReads() }

// Ready checks the database answers.
func (s *Service) Ready(ctx context.Context) error { return s.store.Ping(ctx) }

// Bootstrap creates each user that does not exist yet (by email). Existing users are left alone,
// so a restart never resets a changed password.
func (s *Service) Bootstrap(ctx context.Context, users []cell.BootstrapUser) error {
	for _, b := range users {
		u := cell.User{ID: auth.RandomID(), Email: b.Email, Name: b.Name, Roles: b.Roles, PasswordHash: b.PasswordHash, CreatedAt: s.now()}
		if u.Name == "" {
			u.Name = strings.Split(b.Email, "@")[0]
		}
		if err := s.store.CreateUser(ctx, &u); err != nil && cell.ErrorCode(err) != cell.EConflict {
			return err
		}
	}
	return nil
}

func requireStaff(p cell.Principal) error {
	if !p.IsStaff() {
		return cell.Errorf(cell.EForbidden, "only agents and tenant-admins may do this")
	}
	return nil
}

func requireAdmin(p cell.Principal) error {
	if !p.HasRole(cell.RoleTenantAdmin) && !p.HasRole(cell.RoleSuperAdmin) {
		return cell.Errorf(cell.EForbidden, "only tenant-admins may do this")
	}
	return nil
}

func requireVisitor(p cell.Principal) error {
	if !p.HasRole(cell.RoleVisitor) {
		return cell.Errorf(cell.EForbidden, "only visitors may do this")
	}
	return nil
}

// validText checks a free-text field: valid UTF-8 and at most max characters.
func validText(field, v string, max int) error {
	if !utf8.ValidString(v) {
		return cell.Errorf(cell.EInvalid, "%s is not valid UTF-8", field)
	}
	if utf8.RuneCountInString(v) > max {
		return cell.Errorf(cell.EInvalid, "%s is longer than %d characters", field, max)
	}
	return nil
}
