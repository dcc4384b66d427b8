// Package mongodb stores one tenant's cell data in MongoDB (official driver v2). It runs on real
// MongoDB and on embedded FerretDB v1, and is shaped by what FerretDB v1 does well:
//
//   - Every "exactly one" rule is arbitrated by a unique index (an insert), never by a conditional
//     update, which FerretDB v1 does not perform atomically (DESIGN.md §5).
//   - FerretDB v1 (SQLite backend) pushes exactly one filter shape down to SQLite: `{_id: <string>}`
//     (internal/backends/sqlite/collection.go, Query); every other filter scans and decodes the
//     whole collection. So hot paths are point reads and writes by `_id`, and message ids are
//     "<chatId>:<seq>" so a history page is a run of point reads.
//
// Tenant scoping (DESIGN.md §4): every document carries `tenantId`. Multi-document queries start
// their filter with it (scoped). Point reads by `_id` check the `tenantId` of the document read
// and refuse a foreign one (counted by ForeignReads, expected 0); point writes by `_id` only ever
// name ids this tenant's store generated, in the tenant's own database.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"atende/cell"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Store is the tenant-scoped data access of one cell.
type Store struct {
	client      *mongo.Client
	tenantID    string
	users       *mongo.Collection
	visitors    *mongo.Collection
	chats       *mongo.Collection
	messages    *mongo.Collection
	attachments *mongo.Collection
	claims      *mongo.Collection
	sessions    *mongo.Collection
	settings    *mongo.Collection
	audit       *mongo.Collection
	notes       *mongo.Collection
	departments *mongo.Collection
	canned      *mongo.Collection
	offline     *mongo.Collection

	foreignReads atomic.Int64
	// msgBatch and noteBatch group concurrent message and note inserts (see batcher); stop ends
	// their workers when the store is closed.
	msgBatch, noteBatch *batcher
	stop                chan struct{}
	stopOnce            sync.Once
}

// DefaultTimeout bounds every database operation of a cell (10 s) unless the URI sets its own
// "timeoutMS" (the driver's client-side operation timeout).
const DefaultTimeout = 10 * time.Second

// Open connects to uri and returns the store of tenantID in database dbName. It does not create
// indexes; call EnsureIndexes.
func Open(ctx context.Context, uri, dbName, tenantID string) (*Store, error) {
	if tenantID == "" {
		return nil, errors.New("mongodb: tenantID is required")
	}
	opts := options.Client().ApplyURI(uri)
	if opts.Timeout == nil { // the URI's timeoutMS, when given, wins
		opts.SetTimeout(DefaultTimeout)
	}
	client, err := mongo.Connect(opts)
	if err != nil {
		return nil, fmt.Errorf("mongodb: connect: %w", err)
	}
	db := client.Database(dbName)
	st := &Store{
		client: client, tenantID: tenantID,
		users: db.Collection("users"), visitors: db.Collection("visitors"), chats: db.Collection("chats"),
		messages: db.Collection("messages"), attachments: db.Collection("attachments"),
		claims: db.Collection("claims"), sessions: db.Collection("sessions"),
		settings: db.Collection("settings"), audit: db.Collection("audit"),
		notes: db.Collection("notes"), departments: db.Collection("departments"),
		canned: db.Collection("canned"), offline: db.Collection("offline_messages"),
		stop: make(chan struct{}),
	}
	st.msgBatch = newBatcher(st.messages, "message", st.stop)
	st.noteBatch = newBatcher(st.notes, "message", st.stop)
	return st, nil
}

// Database returns the tenant's database handle, for components that keep their own
// collections in it (the webhook outbox); they follow the same tenantId rules.
func (s *Store) Database() *mongo.Database { return s.chats.Database() }

// Close disconnects from the server.
func (s *Store) Close(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	return s.client.Disconnect(ctx)
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx, nil) }

// EnsureIndexes creates the indexes of DESIGN.md §5 (idempotent).
func (s *Store) EnsureIndexes(ctx context.Context) error {
	sets := []struct {
		c   *mongo.Collection
		ims []mongo.IndexModel
	}{
		{s.chats, []mongo.IndexModel{
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "status", Value: 1}, {Key: "createdAt", Value: -1}}},
			// One open chat per visitor: openKey is set only while open (sparse, since FerretDB v1
			// has no partial indexes).
			{Keys: bson.D{{Key: "openKey", Value: 1}}, Options: options.Index().SetUnique(true).SetSparse(true)},
		}},
		{s.messages, []mongo.IndexModel{
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "createdAt", Value: 1}}},
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "seq", Value: 1}}, Options: options.Index().SetUnique(true)},
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "clientMsgId", Value: 1}}, Options: options.Index().SetUnique(true)},
		}},
		// Private notes: the same shape as messages, in their own collection and seq stream.
		{s.notes, []mongo.IndexModel{
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "seq", Value: 1}}, Options: options.Index().SetUnique(true)},
			{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "clientMsgId", Value: 1}}, Options: options.Index().SetUnique(true)},
		}},
		{s.users, []mongo.IndexModel{{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)}}},
		{s.attachments, []mongo.IndexModel{{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "chatId", Value: 1}, {Key: "createdAt", Value: 1}}}}},
		{s.settings, []mongo.IndexModel{{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "key", Value: 1}}, Options: options.Index().SetUnique(true)}}},
		{s.audit, []mongo.IndexModel{{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "at", Value: -1}}}}},
		{s.sessions, []mongo.IndexModel{{Keys: bson.D{{Key: "tenantId", Value: 1}, {Key: "userId", Value: 1}}}}},
	}
	for _, set := range sets {
		for i := range set.ims {
			// Explicit, conventional names, so real MongoDB and FerretDB agree on them.
			if set.ims[i].Options == nil {
				set.ims[i].Options = options.Index()
			}
			set.ims[i].Options.SetName(indexName(set.ims[i].Keys.(bson.D)))
		}
		// One index per call: FerretDB v1 drops the connection when one createIndexes call
		// holds several indexes that all exist already (a restarted cell).
		for _, im := range set.ims {
			if _, err := set.c.Indexes().CreateOne(ctx, im); err != nil {
				return fmt.Errorf("mongodb: index %s on %s: %w", indexName(im.Keys.(bson.D)), set.c.Name(), err)
			}
		}
	}
	return nil
}

// indexName returns MongoDB's conventional name for keys, e.g. "tenantId_1_chatId_1_seq_1".
func indexName(keys bson.D) string {
	parts := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		parts = append(parts, k.Key, fmt.Sprint(k.Value))
	}
	return strings.Join(parts, "_")
}

// scoped returns filter with tenantId as its first element. Every query goes through it.
func (s *Store) scoped(filter ...bson.E) bson.D {
	return append(bson.D{{Key: "tenantId", Value: s.tenantID}}, filter...)
}

// translate maps driver errors to cell errors: no documents → not_found, duplicate key (E11000,
// or the InternalError FerretDB v1 returns for a duplicate caused by an update) → conflict.
func translate(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return cell.Errorf(cell.ENotFound, "%s not found", what)
	case isDuplicate(err):
		return cell.Errorf(cell.EConflict, "%s already exists", what)
	default:
		return fmt.Errorf("mongodb: %s: %w", what, err)
	}
}

func isDuplicate(err error) bool {
	return mongo.IsDuplicateKeyError(err) || strings.Contains(err.Error(), "duplicate key")
}

func (s *Store) insert(ctx context.Context, c *mongo.Collection, doc any, what string) error {
	_, err := c.InsertOne(ctx, doc)
	return translate(err, what)
}

func (s *Store) findOne(ctx context.Context, c *mongo.Collection, out any, what string, filter ...bson.E) error {
	return translate(c.FindOne(ctx, s.scoped(filter...)).Decode(out), what)
}

// get reads the document with _id id into out by a pushed-down point read, and refuses a document
// of another tenant as not found.
func (s *Store) get(ctx context.Context, c *mongo.Collection, id string, out any, what string) error {
	raw, err := c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Raw()
	if err != nil {
		return translate(err, what)
	}
	if tid, ok := raw.Lookup("tenantId").StringValueOK(); !ok || tid != s.tenantID {
		s.foreignReads.Add(1)
		return cell.Errorf(cell.ENotFound, "%s not found", what)
	}
	return translate(bson.Unmarshal(raw, out), what)
}

// ForeignReads returns how many point reads found a document of another tenant (expected 0).
func (s *Store) ForeignReads() int64 { return s.foreignReads.Load() }

func findAll[T any](ctx context.Context, s *Store, c *mongo.Collection, what string, filter ...bson.E) ([]T, error) {
	cur, err := c.Find(ctx, s.scoped(filter...))
	if err != nil {
		return nil, translate(err, what)
	}
	out := []T{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, translate(err, what)
	}
	return out, nil
}

func (s *Store) update(ctx context.Context, c *mongo.Collection, id string, upd bson.D, what string) error {
	res, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, upd)
	if err != nil {
		return translate(err, what)
	}
	if res.MatchedCount == 0 {
		return cell.Errorf(cell.ENotFound, "%s not found", what)
	}
	return nil
}

// CreateUser stores u (TenantID is set by the store). A second user with the same email is a
// conflict.
func (s *Store) CreateUser(ctx context.Context, u *cell.User) error {
	u.TenantID = s.tenantID
	u.Email = strings.ToLower(u.Email)
	return s.insert(ctx, s.users, u, "user")
}

// UserByEmail returns the user with email (case-insensitive), or not_found.
func (s *Store) UserByEmail(ctx context.Context, email string) (cell.User, error) {
	var u cell.User
	err := s.findOne(ctx, s.users, &u, "user", bson.E{Key: "email", Value: strings.ToLower(email)})
	return u, err
}

// User returns the user with id, or not_found.
func (s *Store) User(ctx context.Context, id string) (cell.User, error) {
	var u cell.User
	err := s.get(ctx, s.users, id, &u, "user")
	return u, err
}

// ListUsers returns all users of the tenant ordered by email.
func (s *Store) ListUsers(ctx context.Context) ([]cell.User, error) {
	users, err := findAll[cell.User](ctx, s, s.users, "users")
	sort.Slice(users, func(i, j int) bool { return users[i].Email < users[j].Email })
	return users, err
}

// SetUserPassword replaces the user's bcrypt password hash.
func (s *Store) SetUserPassword(ctx context.Context, id, hash string) error {
	return s.update(ctx, s.users, id, bson.D{{Key: "$set", Value: bson.D{{Key: "passwordHash", Value: hash}}}}, "user")
}

// SetUserDisabled disables or re-enables the user (a disabled user cannot log in or refresh).
func (s *Store) SetUserDisabled(ctx context.Context, id string, disabled bool) error {
	return s.update(ctx, s.users, id, bson.D{{Key: "$set", Value: bson.D{{Key: "disabled", Value: disabled}}}}, "user")
}

// DeleteUser removes the user with id, or returns not_found.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	if _, err := s.User(ctx, id); err != nil {
		return err
	}
	res, err := s.users.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return translate(err, "user")
	}
	if res.DeletedCount == 0 {
		return cell.Errorf(cell.ENotFound, "user not found")
	}
	return nil
}

// CreateVisitor stores v.
func (s *Store) CreateVisitor(ctx context.Context, v *cell.Visitor) error {
	v.TenantID = s.tenantID
	return s.insert(ctx, s.visitors, v, "visitor")
}

// Visitor returns the visitor with id, or not_found.
func (s *Store) Visitor(ctx context.Context, id string) (cell.Visitor, error) {
	var v cell.Visitor
	err := s.get(ctx, s.visitors, id, &v, "visitor")
	return v, err
}

// InsertChat stores a new chat. If the visitor already has an open chat (same OpenKey) it returns
// conflict and stores nothing.
func (s *Store) InsertChat(ctx context.Context, c *cell.Chat) error {
	c.TenantID = s.tenantID
	return s.insert(ctx, s.chats, c, "open chat")
}

// OpenChatOf returns the visitor's open (queued or active) chat, or not_found.
func (s *Store) OpenChatOf(ctx context.Context, visitorID string) (cell.Chat, error) {
	var c cell.Chat
	err := s.findOne(ctx, s.chats, &c, "chat", bson.E{Key: "openKey", Value: visitorID})
	return c, err
}

// Chat returns the chat with id, or not_found.
func (s *Store) Chat(ctx context.Context, id string) (cell.Chat, error) {
	var c cell.Chat
	err := s.get(ctx, s.chats, id, &c, "chat")
	return c, err
}

// ChatsByStatus returns the chats in status, oldest first.
func (s *Store) ChatsByStatus(ctx context.Context, status cell.ChatStatus) ([]cell.Chat, error) {
	chats, err := findAll[cell.Chat](ctx, s, s.chats, "chats", bson.E{Key: "status", Value: status})
	// Sorted in Go: FerretDB v1 sorts by scanning the whole collection.
	sort.Slice(chats, func(i, j int) bool { return chats[i].CreatedAt.Before(chats[j].CreatedAt) })
	return chats, err
}

// SetChatAccepted records that agent accepted the chat at `at`. The caller must hold the accept
// claim (Claim); this update only records the state.
func (s *Store) SetChatAccepted(ctx context.Context, chatID string, agent cell.Author, at time.Time) error {
	return s.update(ctx, s.chats, chatID, bson.D{{Key: "$set", Value: bson.D{
		{Key: "status", Value: cell.ChatActive}, {Key: "agentId", Value: agent.ID},
		{Key: "agentName", Value: agent.Name}, {Key: "acceptedAt", Value: at},
	}}}, "chat")
}

// SetChatResolved closes the chat at `at` and frees the visitor's open-chat slot.
func (s *Store) SetChatResolved(ctx context.Context, chatID string, at time.Time) error {
	return s.update(ctx, s.chats, chatID, bson.D{
		{Key: "$set", Value: bson.D{{Key: "status", Value: cell.ChatResolved}, {Key: "resolvedAt", Value: at}}},
		{Key: "$unset", Value: bson.D{{Key: "openKey", Value: ""}}},
	}, "chat")
}

// RecordLastMessage raises the chat's lastSeq to seq and lastActivityAt to at (never lowers
// them) and sets its preview.
func (s *Store) RecordLastMessage(ctx context.Context, chatID string, seq int64, preview string, at time.Time) error {
	return s.update(ctx, s.chats, chatID, bson.D{
		{Key: "$max", Value: bson.D{{Key: "lastSeq", Value: seq}, {Key: "lastActivityAt", Value: at}}},
		{Key: "$set", Value: bson.D{{Key: "preview", Value: preview}}},
	}, "chat")
}

// Claim arbitrates an "exactly one" decision: the first caller to claim id wins, by inserting a
// document against the unique _id index. It returns the holder of the claim (holder itself when
// this call won) and whether this call created it.
func (s *Store) Claim(ctx context.Context, id, holder string) (winner string, won bool, err error) {
	_, err = s.claims.InsertOne(ctx, bson.D{
		{Key: "_id", Value: id}, {Key: "tenantId", Value: s.tenantID},
		{Key: "holder", Value: holder}, {Key: "at", Value: time.Now().UTC()},
	})
	if err == nil {
		return holder, true, nil
	}
	if !isDuplicate(err) {
		return "", false, translate(err, "claim")
	}
	var doc struct {
		Holder string `bson:"holder"`
	}
	if err := s.get(ctx, s.claims, id, &doc, "claim"); err != nil {
		return "", false, err
	}
	return doc.Holder, false, nil
}

// MessageID returns the _id of the message with seq in chatID: "<chatId>:<seq, 12 digits>". The
// unique _id makes seq arbitration an insert, and a history page a run of point reads.
func MessageID(chatID string, seq int64) string { return fmt.Sprintf("%s:%012d", chatID, seq) }

// InsertMessage stores m under MessageID(m.ChatID, m.Seq) and returns once it is committed; inserts
// that arrive together are committed in one batch (see batcher). A duplicate seq or clientMsgId
// in the chat returns conflict and stores nothing; MessageByClientID tells them apart. If ctx
// ends first the outcome is unknown (the message may still be stored).
func (s *Store) InsertMessage(ctx context.Context, m *cell.Message) error {
	m.TenantID = s.tenantID
	m.ID = MessageID(m.ChatID, m.Seq)
	if m.Private {
		m.ID = "n:" + m.ID
		return s.noteBatch.insert(ctx, *m) // a copy: the caller may reuse m once it returns
	}
	return s.msgBatch.insert(ctx, *m)
}

// thread returns the collection of a chat's messages (private false) or notes (private true).
func (s *Store) thread(private bool) *mongo.Collection {
	if private {
		return s.notes
	}
	return s.messages
}

// threadID returns the _id of seq in the chat's message or note stream.
func threadID(chatID string, seq int64, private bool) string {
	if private {
		return "n:" + MessageID(chatID, seq)
	}
	return MessageID(chatID, seq)
}

// MessageByClientID returns the chat's message with clientMsgID, or not_found. It scans on
// FerretDB v1 (no pushdown), so callers use it only after an insert conflict.
func (s *Store) MessageByClientID(ctx context.Context, chatID, clientMsgID string, private bool) (cell.Message, error) {
	var m cell.Message
	err := s.findOne(ctx, s.thread(private), &m, "message",
		bson.E{Key: "chatId", Value: chatID}, bson.E{Key: "clientMsgId", Value: clientMsgID})
	return m, err
}

// HasMessageSeq reports whether the chat has a message with seq (a point read).
func (s *Store) HasMessageSeq(ctx context.Context, chatID string, seq int64, private bool) (bool, error) {
	var m cell.Message
	err := s.get(ctx, s.thread(private), threadID(chatID, seq, private), &m, "message")
	switch cell.ErrorCode(err) {
	case "":
		return true, nil
	case cell.ENotFound:
		return false, nil
	default:
		return false, err
	}
}

// historyReaders bounds the concurrent point reads of one history page.
const historyReaders = 8

// MessagesInRange returns the chat's messages with after < seq ≤ upTo in seq order, by point reads
// (seqs are gapless). It stops at the first missing seq, so the result is always a contiguous run
// starting at after+1.
func (s *Store) MessagesInRange(ctx context.Context, chatID string, after, upTo int64, private bool) ([]cell.Message, error) {
	n := int(max(0, upTo-after))
	msgs := make([]cell.Message, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, historyReaders)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.get(ctx, s.thread(private), threadID(chatID, after+1+int64(i), private), &msgs[i], "message")
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if cell.ErrorCode(err) == cell.ENotFound {
			return msgs[:i], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return msgs, nil
}

// InsertAttachment stores a.
func (s *Store) InsertAttachment(ctx context.Context, a *cell.Attachment) error {
	a.TenantID = s.tenantID
	return s.insert(ctx, s.attachments, a, "attachment")
}

// Attachment returns the attachment with id, or not_found.
func (s *Store) Attachment(ctx context.Context, id string) (cell.Attachment, error) {
	var a cell.Attachment
	err := s.get(ctx, s.attachments, id, &a, "attachment")
	return a, err
}

// InsertAudit stores one audit entry.
func (s *Store) InsertAudit(ctx context.Context, e *cell.AuditEntry) error {
	e.TenantID = s.tenantID
	return s.insert(ctx, s.audit, e, "audit entry")
}

// AuditLog returns the tenant's newest audit entries, at most limit, newest first (sorted in Go:
// FerretDB v1 sorts by scanning the collection anyway).
func (s *Store) AuditLog(ctx context.Context, limit int) ([]cell.AuditEntry, error) {
	entries, err := findAll[cell.AuditEntry](ctx, s, s.audit, "audit log")
	sort.Slice(entries, func(i, j int) bool { return entries[i].At.After(entries[j].At) })
	if len(entries) > limit {
		entries = entries[:limit]
	}
	return entries, err
}

// InsertSession stores a refresh-token session.
func (s *Store) InsertSession(ctx context.Context, sess *cell.Session) error {
	sess.TenantID = s.tenantID
	return s.insert(ctx, s.sessions, sess, "session")
}

// Session returns the session with id, or not_found.
func (s *Store) Session(ctx context.Context, id string) (cell.Session, error) {
	var sess cell.Session
	err := s.get(ctx, s.sessions, id, &sess, "session")
	return sess, err
}

// SetSessionJTI records jti as the session's current refresh token.
func (s *Store) SetSessionJTI(ctx context.Context, id, jti string) error {
	return s.update(ctx, s.sessions, id, bson.D{{Key: "$set", Value: bson.D{{Key: "currentJti", Value: jti}}}}, "session")
}

// RevokeUserSessions revokes every session of userID.
func (s *Store) RevokeUserSessions(ctx context.Context, userID string) error {
	sessions, err := findAll[cell.Session](ctx, s, s.sessions, "sessions", bson.E{Key: "userId", Value: userID})
	if err != nil {
		return err
	}
	for _, sess := range sessions {
		if err := s.RevokeSession(ctx, sess.ID); err != nil {
			return err
		}
	}
	return nil
}

// RevokeSession marks the session revoked: its refresh and access tokens stop working (access
// tokens are checked against their session on every request).
func (s *Store) RevokeSession(ctx context.Context, id string) error {
	return s.update(ctx, s.sessions, id, bson.D{{Key: "$set", Value: bson.D{{Key: "revoked", Value: true}}}}, "session")
}
