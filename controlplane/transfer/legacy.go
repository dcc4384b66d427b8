package transfer

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/mail"
	"os"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
	"golang.org/x/crypto/bcrypt"

	"atende/cell"
	cellmongo "atende/cell/mongodb"
	"atende/controlplane"
)

// The single-tenant app's database, as this migration reads it (README, "Migrating from the
// single-tenant app"). Documents carry no tenantId:
//
//	users    {_id ObjectId, name, email, password (bcrypt), role: "admin"|"agent"}
//	chats    {_id ObjectId, visitorName, visitorEmail?, status: "waiting"|"active"|"closed",
//	          agentId?, createdAt, acceptedAt?, closedAt?}
//	messages {_id ObjectId, chatId, sender: "visitor"|"agent", senderName, text, createdAt}
//
// ids become strings (an ObjectId its 24 hex digits, a string id stays); statuses map waiting →
// queued, active → active, closed → resolved; role admin → tenant-admin + agent, agent → agent;
// each chat gets a visitor "v-<chatId>" from visitorName/visitorEmail; a chat's messages, ordered
// by createdAt (then _id), get seqs 1..n, _id "<chatId>:<seq, 12 digits>" and clientMsgId
// "legacy-<old _id>", and the chat lastSeq n. An active chat holds its agent's capacity slot and
// its first assignment round, as if accepted here. What cannot be mapped is skipped and reported
// with the reason.
const (
	legacyUsers    = "users"
	legacyChats    = "chats"
	legacyMessages = "messages"
)

// legacyTenant is the tenantId given to the migrated documents before the import rewrites it.
const legacyTenant = "legacy"

// maxSkippedListed bounds the skipped documents listed in a report (all are counted).
const maxSkippedListed = 1000

// LegacySource names the single-tenant app's MongoDB database.
type LegacySource struct {
	// URI is a mongodb:// or mongodb+srv:// connection string (with credentials if needed; it is
	// never logged or recorded).
	URI string
	// Database is the database name; empty means the one named in URI's path.
	Database string
}

// LegacyCount counts the documents of one legacy collection: read and imported (the difference
// was skipped).
type LegacyCount struct {
	// Read is the number of legacy documents read.
	Read int64 `json:"read"`
	// Imported is the number written into the tenant.
	Imported int64 `json:"imported"`
}

// Skipped names a legacy document that was skipped or changed, and why.
type Skipped struct {
	// Collection is the legacy collection: users, chats or messages.
	Collection string `json:"collection"`
	// ID is the document's id (hex for an ObjectId).
	ID string `json:"id"`
	// Reason says why it was skipped or what was changed.
	Reason string `json:"reason"`
}

// LegacyReport details a migration from the single-tenant app.
type LegacyReport struct {
	// Source is "<database> on <hosts>" (never the credentials).
	Source string `json:"source"`
	// Users counts the legacy users read and imported.
	Users LegacyCount `json:"users"`
	// Chats counts the legacy chats read and imported.
	Chats LegacyCount `json:"chats"`
	// Messages counts the legacy messages read and imported.
	Messages LegacyCount `json:"messages"`
	// Skipped lists the documents left out with the reason (at most 1000).
	Skipped []Skipped `json:"skipped"`
	// SkippedTotal counts every document left out.
	SkippedTotal int64 `json:"skippedTotal"`
	// Changed lists documents imported with a change, e.g. an active chat whose agent was not
	// imported goes back to the queue.
	Changed []Skipped `json:"changed"`
}

// skip records a skipped document.
func (r *LegacyReport) skip(coll, id, format string, args ...any) {
	r.SkippedTotal++
	if len(r.Skipped) < maxSkippedListed {
		r.Skipped = append(r.Skipped, Skipped{Collection: coll, ID: id, Reason: fmt.Sprintf(format, args...)})
	}
}

// change records a document imported with a change.
func (r *LegacyReport) change(coll, id, format string, args ...any) {
	if len(r.Changed) < maxSkippedListed {
		r.Changed = append(r.Changed, Skipped{Collection: coll, ID: id, Reason: fmt.Sprintf(format, args...)})
	}
}

// ImportLegacy migrates the single-tenant app's database src into the tenant idOrKey on behalf of
// actor: it maps the legacy documents to the cell's shapes (see the constants above), writes them
// through the same validation and rules as Import (tenantId set to the tenant's id, indexes
// built) and reports what it read, imported and skipped. Errors: not_found, conflict (as for
// Import), invalid (a bad URI, an unreachable server, a database without the app's collections).
func (s *Service) ImportLegacy(ctx context.Context, idOrKey, actor string, src LegacySource) (*Report, error) {
	t, release, err := s.target(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	defer release()
	cs, err := connstring.ParseAndValidate(src.URI)
	if err != nil || (cs.Scheme != connstring.SchemeMongoDB && cs.Scheme != connstring.SchemeMongoDBSRV) {
		return nil, invalid("fromMongo must be a mongodb:// or mongodb+srv:// connection string")
	}
	dbName := src.Database
	if dbName == "" {
		dbName = cs.Database
	}
	if dbName == "" || strings.ContainsAny(dbName, "/\\. \"$\x00") {
		return nil, invalid("name the legacy database with database (or in the URI's path, mongodb://host/<database>)")
	}
	rep := &LegacyReport{Source: dbName + " on " + strings.Join(cs.Hosts, ","), Skipped: []Skipped{}, Changed: []Skipped{}}
	hide := func(err error) string {
		msg := err.Error()
		if cs.Password != "" {
			msg = strings.ReplaceAll(msg, cs.Password, "***")
		}
		return msg
	}
	// Defaults first: the URI's own options (e.g. serverSelectionTimeoutMS) win.
	client, err := mongo.Connect(options.Client().SetServerSelectionTimeout(10 * time.Second).SetTimeout(2 * time.Minute).ApplyURI(src.URI))
	if err != nil {
		return nil, invalid("cannot use the legacy database URI: %s", hide(err))
	}
	defer client.Disconnect(context.WithoutCancel(ctx))
	db := client.Database(dbName)
	names, err := db.ListCollectionNames(ctx, bson.D{})
	if err != nil {
		return nil, invalid("cannot read the legacy database %s: %s", rep.Source, hide(err))
	}
	found := 0
	for _, n := range names {
		if n == legacyUsers || n == legacyChats || n == legacyMessages {
			found++
		}
	}
	if found == 0 {
		return nil, invalid("the legacy database %s has none of the collections users, chats, messages", rep.Source)
	}
	docs, err := s.tempFile("legacy-*.jsonl")
	if err != nil {
		return nil, err
	}
	defer removeFile(docs)
	m := &migration{db: db, rep: rep, out: &docWriter{w: bufio.NewWriterSize(docs, 256<<10), counts: map[string]int64{}}}
	if err := m.run(ctx); err != nil {
		return nil, err
	}
	if err := m.out.w.Flush(); err != nil {
		return nil, fmt.Errorf("transfer: spool: %w", err)
	}
	file, err := s.tempFile("legacy-*.gz")
	if err != nil {
		return nil, err
	}
	defer removeFile(file)
	h := Header{Format: Format, Version: Version, ExportedAt: time.Now().UTC().Truncate(time.Second),
		Tenant: TenantInfo{ID: legacyTenant, Name: dbName}, Counts: map[string]int64{}}
	for _, c := range Collections {
		h.Counts[c] = m.out.counts[c]
	}
	if err := assemble(file, h, docs); err != nil {
		return nil, err
	}
	out, err := s.load(ctx, t, file, actor, rep)
	if controlplane.ErrorCode(err) == controlplane.EInvalid {
		// The mapping produced something the import refuses: a bug here, not the caller's input.
		return nil, fmt.Errorf("transfer: the migrated documents do not validate: %w", err)
	}
	return out, err
}

// assemble writes an export file to f: h, the document lines of docs, the trailer.
func assemble(f *os.File, h Header, docs *os.File) error {
	if _, err := docs.Seek(0, io.SeekStart); err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	head, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if _, err := gz.Write(append(head, '\n')); err != nil {
		return err
	}
	if _, err := io.Copy(gz, docs); err != nil {
		return err
	}
	if _, err := gz.Write([]byte(`{"end":true}` + "\n")); err != nil {
		return err
	}
	return gz.Close()
}

// docWriter writes document lines (canonical Extended JSON) and counts them per collection.
type docWriter struct {
	w      *bufio.Writer
	counts map[string]int64
}

// add writes v (a cell type or bson.D) as a document line of coll.
func (d *docWriter) add(coll string, v any) error {
	raw, err := bson.Marshal(v)
	if err != nil {
		return err
	}
	doc, err := bson.MarshalExtJSON(bson.Raw(raw), true, false)
	if err != nil {
		return err
	}
	name, _ := json.Marshal(coll)
	d.w.WriteString(`{"collection":`)
	d.w.Write(name)
	d.w.WriteString(`,"doc":`)
	d.w.Write(doc)
	if _, err := d.w.WriteString("}\n"); err != nil {
		return fmt.Errorf("transfer: spool: %w", err)
	}
	d.counts[coll]++
	return nil
}

// migration maps one legacy database.
type migration struct {
	db    *mongo.Database
	rep   *LegacyReport
	out   *docWriter
	users map[string]cell.User
	chats map[string]*legacyChat
}

// legacyChat is a mapped chat waiting for its messages' facts.
type legacyChat struct {
	chat        cell.Chat
	legacyAgent string // the legacy agentId, kept as the author id of agent messages
	order       []msgKey
	seqs        map[string]int64 // legacy message id → seq
	last        *cell.Message
	firstAgent  *time.Time
}

// msgKey orders a chat's messages.
type msgKey struct {
	at time.Time
	id string
}

// run maps users, then chats, then messages (two passes: seqs, then documents), then writes the
// chats with their message facts, their visitors and their claims.
func (m *migration) run(ctx context.Context) error {
	if err := m.mapUsers(ctx); err != nil {
		return err
	}
	if err := m.mapChats(ctx); err != nil {
		return err
	}
	if err := m.orderMessages(ctx); err != nil {
		return err
	}
	if err := m.mapMessages(ctx); err != nil {
		return err
	}
	return m.writeChats()
}

// each calls fn with every document of a legacy collection.
func (m *migration) each(ctx context.Context, coll string, projection bson.D, fn func(bson.Raw) error) error {
	opts := options.Find()
	if projection != nil {
		opts.SetProjection(projection)
	}
	cur, err := m.db.Collection(coll).Find(ctx, bson.D{}, opts)
	if err != nil {
		return invalid("cannot read legacy %s: %v", coll, err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if err := fn(cur.Current); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return invalid("cannot read legacy %s: %v", coll, err)
	}
	return nil
}

func (m *migration) mapUsers(ctx context.Context) error {
	m.users = map[string]cell.User{}
	var users []cell.User
	byEmail := map[string]string{}
	err := m.each(ctx, legacyUsers, nil, func(d bson.Raw) error {
		m.rep.Users.Read++
		id, ok := legacyID(d.Lookup("_id"))
		if !ok {
			m.rep.skip(legacyUsers, rawID(d), "_id is neither an ObjectId nor a string")
			return nil
		}
		email := strings.ToLower(strings.TrimSpace(str(d, "email")))
		if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
			m.rep.skip(legacyUsers, id, "email %q is not an email address", str(d, "email"))
			return nil
		}
		if first, dup := byEmail[email]; dup {
			m.rep.skip(legacyUsers, id, "email %s is also the email of user %s, which was kept", email, first)
			return nil
		}
		hash := str(d, "password")
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			m.rep.skip(legacyUsers, id, "password is not a bcrypt hash (the user could not log in)")
			return nil
		}
		var roles []string
		switch str(d, "role") {
		case "admin":
			roles = []string{cell.RoleTenantAdmin, cell.RoleAgent}
		case "agent":
			roles = []string{cell.RoleAgent}
		default:
			m.rep.skip(legacyUsers, id, "role %q is neither admin nor agent", str(d, "role"))
			return nil
		}
		name := strings.TrimSpace(str(d, "name"))
		if name == "" {
			name, _, _ = strings.Cut(email, "@")
		}
		created, ok := legacyTime(d.Lookup("createdAt"))
		if !ok {
			created = idTime(d.Lookup("_id"))
		}
		byEmail[email] = id
		u := cell.User{ID: id, TenantID: legacyTenant, Email: email, Name: name, Roles: roles, PasswordHash: hash,
			CreatedAt: created, Departments: []string{}}
		m.users[id] = u
		users = append(users, u)
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range users {
		if err := m.out.add(colUsers, u); err != nil {
			return err
		}
		m.rep.Users.Imported++
	}
	return nil
}

func (m *migration) mapChats(ctx context.Context) error {
	m.chats = map[string]*legacyChat{}
	return m.each(ctx, legacyChats, nil, func(d bson.Raw) error {
		m.rep.Chats.Read++
		id, ok := legacyID(d.Lookup("_id"))
		if !ok {
			m.rep.skip(legacyChats, rawID(d), "_id is neither an ObjectId nor a string")
			return nil
		}
		var status cell.ChatStatus
		switch str(d, "status") {
		case "waiting":
			status = cell.ChatQueued
		case "active":
			status = cell.ChatActive
		case "closed":
			status = cell.ChatResolved
		default:
			m.rep.skip(legacyChats, id, "status %q is not waiting, active or closed", str(d, "status"))
			return nil
		}
		created, ok := legacyTime(d.Lookup("createdAt"))
		if !ok {
			created = idTime(d.Lookup("_id"))
		}
		name := strings.TrimSpace(str(d, "visitorName"))
		if name == "" {
			name = "Visitor"
		}
		visitor := cell.Visitor{ID: "v-" + id, TenantID: legacyTenant, Name: name,
			Email: strings.TrimSpace(str(d, "visitorEmail")), CreatedAt: created}
		lc := &legacyChat{seqs: map[string]int64{}, chat: cell.Chat{
			ID: id, TenantID: legacyTenant, Status: status, VisitorID: visitor.ID, Visitor: visitor,
			CreatedAt: created, LastActivityAt: created, Labels: []string{},
		}}
		if agent, ok := legacyID(d.Lookup("agentId")); ok {
			lc.legacyAgent = agent
		}
		if at, ok := legacyTime(d.Lookup("acceptedAt")); ok {
			lc.chat.AcceptedAt = &at
		}
		if at, ok := legacyTime(d.Lookup("closedAt")); ok && status == cell.ChatResolved {
			lc.chat.ClosedAt = &at
		}
		m.chats[id] = lc
		return nil
	})
}

// legacyMessage is a legacy message that can be imported.
type legacyMessage struct {
	id, chatID string
	chat       *legacyChat
	at         time.Time
}

// classify decides whether a legacy message can be imported; when not, it returns the reason.
func (m *migration) classify(d bson.Raw) (legacyMessage, string) {
	id, ok := legacyID(d.Lookup("_id"))
	if !ok {
		return legacyMessage{id: rawID(d)}, "_id is neither an ObjectId nor a string"
	}
	lm := legacyMessage{id: id}
	chatID, ok := legacyID(d.Lookup("chatId"))
	if !ok {
		return lm, "chatId is missing"
	}
	lm.chatID, lm.chat = chatID, m.chats[chatID]
	if lm.chat == nil {
		return lm, fmt.Sprintf("chat %s was not imported", chatID)
	}
	if lm.at, ok = legacyTime(d.Lookup("createdAt")); !ok {
		return lm, "createdAt is missing"
	}
	if text, _ := d.Lookup("text").StringValueOK(); strings.TrimSpace(text) == "" {
		return lm, "text is empty"
	}
	if sender := str(d, "sender"); sender != "visitor" && sender != "agent" {
		return lm, fmt.Sprintf("sender %q is neither visitor nor agent", sender)
	}
	return lm, ""
}

// orderMessages classifies every legacy message (reporting those skipped) and gives each one
// kept its seq: per chat, ordered by createdAt, then by _id, from 1 without gaps.
func (m *migration) orderMessages(ctx context.Context) error {
	err := m.each(ctx, legacyMessages, nil, func(d bson.Raw) error {
		m.rep.Messages.Read++
		lm, reason := m.classify(d)
		if reason != "" {
			m.rep.skip(legacyMessages, lm.id, "%s", reason)
			return nil
		}
		lm.chat.order = append(lm.chat.order, msgKey{at: lm.at, id: lm.id})
		return nil
	})
	if err != nil {
		return err
	}
	for _, lc := range m.chats {
		sort.Slice(lc.order, func(i, j int) bool {
			a, b := lc.order[i], lc.order[j]
			if !a.at.Equal(b.at) {
				return a.at.Before(b.at)
			}
			return a.id < b.id
		})
		for _, k := range lc.order {
			if _, dup := lc.seqs[k.id]; !dup {
				lc.seqs[k.id] = int64(len(lc.seqs) + 1)
			}
		}
		lc.order = nil
	}
	return nil
}

// mapMessages writes the messages kept by orderMessages with their seqs, and collects what their
// chats need: the last message, the first agent message.
func (m *migration) mapMessages(ctx context.Context) error {
	written := map[string]bool{}
	return m.each(ctx, legacyMessages, nil, func(d bson.Raw) error {
		lm, reason := m.classify(d)
		if reason != "" {
			return nil
		}
		lc := lm.chat
		seq := lc.seqs[lm.id]
		key := lm.chatID + "\x00" + lm.id
		if seq == 0 || written[key] {
			return nil
		}
		written[key] = true
		text, _ := d.Lookup("text").StringValueOK()
		name := strings.TrimSpace(str(d, "senderName"))
		var from cell.Author
		if str(d, "sender") == "visitor" {
			if name == "" {
				name = lc.chat.Visitor.Name
			}
			from = cell.Author{Role: cell.RoleVisitor, ID: lc.chat.VisitorID, Name: name}
		} else {
			agent := lc.legacyAgent
			if agent == "" {
				agent = legacyTenant
			}
			if name == "" {
				name = m.users[agent].Name
			}
			from = cell.Author{Role: cell.RoleAgent, ID: agent, Name: name}
			if lc.firstAgent == nil || lm.at.Before(*lc.firstAgent) {
				at := lm.at
				lc.firstAgent = &at
			}
		}
		msg := cell.Message{ID: cellmongo.MessageID(lm.chatID, seq), TenantID: legacyTenant, ChatID: lm.chatID, Seq: seq,
			ClientMsgID: "legacy-" + lm.id, From: from, Body: text, CreatedAt: lm.at}
		if err := m.out.add(colMessages, msg); err != nil {
			return err
		}
		m.rep.Messages.Imported++
		if lc.last == nil || seq > lc.last.Seq {
			lc.last = &msg
		}
		return nil
	})
}

// writeChats completes every chat with its messages' facts (lastSeq, preview, activity, first
// response, history, read receipts, assignment) and writes it with its visitor and, for an
// assigned chat, its assignment claim and, while active, its agent's capacity slot.
func (m *migration) writeChats() error {
	ids := make([]string, 0, len(m.chats))
	for id := range m.chats {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	slots := map[string]int{} // agent → next slot index
	for _, id := range ids {
		lc := m.chats[id]
		c := &lc.chat
		c.LastSeq = int64(len(lc.seqs))
		if lc.last != nil {
			c.Preview = preview(lc.last.Body)
			if lc.last.CreatedAt.After(c.LastActivityAt) {
				c.LastActivityAt = lc.last.CreatedAt
			}
		}
		agent, known := m.users[lc.legacyAgent]
		switch {
		case c.Status == cell.ChatActive && !known:
			c.Status, c.AcceptedAt = cell.ChatQueued, nil
			m.rep.change(legacyChats, id, "active with agent %q, who was not imported: back in the queue", lc.legacyAgent)
		case c.Status == cell.ChatQueued && lc.legacyAgent != "":
			m.rep.change(legacyChats, id, "waiting with agent %q: the agent is dropped", lc.legacyAgent)
			known = false
		case c.Status == cell.ChatResolved && lc.legacyAgent != "" && !known:
			m.rep.change(legacyChats, id, "closed by agent %q, who was not imported: kept without agent", lc.legacyAgent)
		}
		if !known {
			c.AcceptedAt = nil
		}
		visitorActor := cell.Author{Role: cell.RoleVisitor, ID: c.VisitorID, Name: c.Visitor.Name}
		c.History = []cell.ChatTransition{{Type: cell.TransitionCreated, To: cell.ChatQueued, Actor: visitorActor, At: c.CreatedAt}}
		before := cell.ChatQueued
		if known {
			c.AgentID, c.AgentName = agent.ID, agent.Name
			if c.AcceptedAt == nil {
				at := c.CreatedAt
				if lc.firstAgent != nil {
					at = *lc.firstAgent
				}
				c.AcceptedAt = &at
			}
			c.Assignment = 1
			agentActor := cell.Author{Role: cell.RoleAgent, ID: agent.ID, Name: agent.Name}
			c.History = append(c.History, cell.ChatTransition{Type: cell.TransitionAccepted, From: cell.ChatQueued, To: cell.ChatActive, Actor: agentActor, At: *c.AcceptedAt, AgentID: agent.ID})
			before = cell.ChatActive
			if lc.firstAgent != nil && !lc.firstAgent.Before(*c.AcceptedAt) {
				c.FirstResponseAt = lc.firstAgent
			}
			claim := bson.D{{Key: "_id", Value: fmt.Sprintf("assign:%s:1", id)}, {Key: "tenantId", Value: legacyTenant},
				{Key: "holder", Value: agent.ID}, {Key: "at", Value: *c.AcceptedAt}}
			if err := m.out.add(colClaims, claim); err != nil {
				return err
			}
		}
		switch c.Status {
		case cell.ChatResolved:
			at := c.LastActivityAt
			if c.ClosedAt != nil {
				at = *c.ClosedAt
			}
			c.ClosedAt, c.ResolvedAt = &at, &at
			c.History = append(c.History, cell.ChatTransition{Type: cell.TransitionResolved, From: before, To: cell.ChatResolved, Actor: cell.SystemActor, At: at, AgentID: c.AgentID})
			c.VisitorReadSeq, c.AgentReadSeq = c.LastSeq, c.LastSeq
		case cell.ChatQueued, cell.ChatActive:
			c.OpenKey = c.VisitorID
		}
		if c.Status == cell.ChatActive {
			k := slots[agent.ID]
			slots[agent.ID] = k + 1
			c.SlotID = cellmongo.SlotID(agent.ID, k)
			slot := bson.D{{Key: "_id", Value: c.SlotID}, {Key: "tenantId", Value: legacyTenant},
				{Key: "holder", Value: id}, {Key: "at", Value: *c.AcceptedAt}}
			if err := m.out.add(colClaims, slot); err != nil {
				return err
			}
		}
		visitor := c.Visitor
		visitor.LastChatID = id
		if err := m.out.add(colVisitors, visitor); err != nil {
			return err
		}
		if err := m.out.add(colChats, c); err != nil {
			return err
		}
		m.rep.Chats.Imported++
	}
	return nil
}

// preview is a chat's preview of its last message, as the cell makes it: at most 120
// characters, then "…".
func preview(body string) string {
	r := []rune(body)
	if len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return body
}

// legacyID returns an id as a string: an ObjectId's hex digits, or a non-empty string.
func legacyID(v bson.RawValue) (string, bool) {
	if oid, ok := v.ObjectIDOK(); ok {
		return oid.Hex(), true
	}
	if s, ok := v.StringValueOK(); ok && s != "" && len(s) <= 200 && !strings.ContainsAny(s, ":\x00") {
		return s, true
	}
	return "", false
}

// rawID describes an id that is not usable, for the report.
func rawID(d bson.Raw) string {
	v := d.Lookup("_id")
	if v.Type == 0 {
		return "(none)"
	}
	s := v.String()
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// legacyTime reads a time: a BSON date, or an RFC 3339 string.
func legacyTime(v bson.RawValue) (time.Time, bool) {
	if dt, ok := v.DateTimeOK(); ok {
		return time.UnixMilli(dt).UTC(), true
	}
	if s, ok := v.StringValueOK(); ok {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t.UTC().Truncate(time.Millisecond), true
		}
	}
	return time.Time{}, false
}

// idTime is the creation time in an ObjectId, or now for another id.
func idTime(v bson.RawValue) time.Time {
	if oid, ok := v.ObjectIDOK(); ok {
		return oid.Timestamp().UTC()
	}
	return time.Now().UTC().Truncate(time.Millisecond)
}
