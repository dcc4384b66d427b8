package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"golang.org/x/crypto/bcrypt"

	"atende/cell"
	cellmongo "atende/cell/mongodb"
	"atende/controlplane"
)

// Report is the answer to an import: what was written into which tenant.
type Report struct {
	// Tenant is the tenant imported into.
	Tenant TenantInfo `json:"tenant"`
	// Source is "file" (an export) or "legacy" (the single-tenant app's database).
	Source string `json:"source"`
	// From is the exported tenant named by the file's header (file imports only).
	From *TenantInfo `json:"from,omitempty"`
	// Documents maps each collection to the number of documents written.
	Documents map[string]int64 `json:"documents"`
	// Objects counts the objects written and their bytes.
	Objects ObjectCount `json:"objects"`
	// ReplacedUsers lists the emails of the tenant's users that the import replaced (same email
	// or id as a user of the file), e.g. the admin created with the tenant.
	ReplacedUsers []string `json:"replacedUsers"`
	// Legacy details a migration from the single-tenant app (legacy imports only).
	Legacy *LegacyReport `json:"legacy,omitempty"`
}

// Summary describes the report in one line.
func (r *Report) Summary() string { return summary(r.Documents, r.Objects) }

// importable reports whether a tenant in state st may receive an import: its cell has created its
// database (live) or has been stopped on purpose (suspended).
func importable(st controlplane.State) bool {
	return st == controlplane.StateLive || st == controlplane.StateSuspended
}

// target resolves the tenant to import into, checks its state and takes its import lock (one
// import per tenant at a time in this control plane); the caller must call release.
func (s *Service) target(ctx context.Context, idOrKey string) (t *controlplane.Tenant, release func(), err error) {
	if t, err = s.opts.Tenants.Tenant(ctx, idOrKey); err != nil {
		return nil, nil, err
	}
	if !importable(t.State) {
		return nil, nil, controlplane.Errorf(controlplane.EConflict, "tenant %s is %s: import into a live or suspended tenant", t.Key, t.State)
	}
	if _, busy := s.importing.LoadOrStore(t.ID, true); busy {
		return nil, nil, controlplane.Errorf(controlplane.EConflict, "an import into tenant %s is already running", t.Key)
	}
	return t, func() { s.importing.Delete(t.ID) }, nil
}

// Import loads the export read from r into the tenant idOrKey on behalf of actor (see the
// package documentation for the rules). Errors: not_found, conflict (the tenant's state, another
// import into it running, or it already has other data), invalid (the file; nothing is written),
// too_large (the file exceeds Options.MaxImportBytes).
func (s *Service) Import(ctx context.Context, idOrKey, actor string, r io.Reader) (*Report, error) {
	t, release, err := s.target(ctx, idOrKey)
	if err != nil {
		return nil, err
	}
	defer release()
	spool, err := s.tempFile("import-*.gz")
	if err != nil {
		return nil, err
	}
	defer removeFile(spool)
	if _, err := io.Copy(spool, &limitedReader{r: r, n: s.opts.MaxImportBytes}); err != nil {
		if controlplane.ErrorCode(err) == controlplane.ETooLarge {
			return nil, controlplane.Errorf(controlplane.ETooLarge, "the file is larger than this control plane's limit of %d bytes", s.opts.MaxImportBytes)
		}
		return nil, invalid("the file could not be read completely: %v", err)
	}
	return s.load(ctx, t, spool, actor, nil)
}

// load validates the export in spool, checks that t may take it, and writes it. legacy, when not
// nil, is the report of the migration that produced the file.
func (s *Service) load(ctx context.Context, t *controlplane.Tenant, spool *os.File, actor string, legacy *LegacyReport) (*Report, error) {
	p, err := s.validate(spool, t.ID)
	if err != nil {
		return nil, err
	}
	if err := s.gate(ctx, t, spool, p); err != nil {
		return nil, err
	}
	rep := &Report{
		Tenant: TenantInfo{ID: t.ID, Key: t.Key, Name: t.Name, Plan: t.Plan}, Source: "file",
		Documents: map[string]int64{}, ReplacedUsers: []string{}, Legacy: legacy,
	}
	if legacy == nil {
		from := p.header.Tenant
		rep.From = &from
	} else {
		rep.Source = "legacy"
	}
	for _, c := range Collections {
		rep.Documents[c] = 0
	}
	err = s.apply(ctx, t, spool, p, rep)
	what := fmt.Sprintf("from the export of tenant %s (%s) made %s", p.header.Tenant.Key, p.header.Tenant.ID, p.header.ExportedAt.Format("2006-01-02T15:04:05Z"))
	if legacy != nil {
		what = "from the single-tenant app's database " + legacy.Source
	}
	if err != nil {
		s.log.Error("import failed", "tenantId", t.ID, "err", err.Error())
		s.record(ctx, t.ID, fmt.Sprintf("import by super-admin %s %s failed after writing began (run it again): %s", actor, what, shortError(err)))
		s.auditEntry(ctx, t.ID, actor, "tenant.import", cell.OutcomeFailed, what)
		return nil, err
	}
	s.log.Info("tenant imported", "tenantId", t.ID, "actor", actor, "source", rep.Source, "objects", rep.Objects.Count)
	s.record(ctx, t.ID, fmt.Sprintf("imported by super-admin %s %s: %s", actor, what, rep.Summary()))
	s.auditEntry(ctx, t.ID, actor, "tenant.import", cell.OutcomeOK, what+": "+rep.Summary())
	return rep, nil
}

// plan is what validation learned about a file.
type plan struct {
	header Header
	// from and to are the tenant ids rewritten.
	from, to string
}

// checker holds the state of a validation pass.
type checker struct {
	from, to   string
	counts     map[string]int64
	objects    ObjectCount
	ids        map[string]map[string]bool
	emails     map[string]bool
	openKeys   map[string]bool
	chats      map[string]cell.Chat
	visitors   map[string]bool
	needChats  map[string]string // chat id → where it is first referenced
	needVisits map[string]string // visitor id → where it is first referenced
	messages   map[string]*run   // chat id → its messages' seqs
	notes      map[string]*run   // chat id → its notes' seqs
	clientIDs  map[string]bool
	deptNames  map[string]bool
	shortcuts  map[string]bool
	objectKeys map[string]bool
	obj        *objectState
}

// run summarises the seqs of one chat's messages (or notes); with unique ids, count == max means
// they are exactly 1..max.
type run struct{ count, max int64 }

// objectState follows the parts of the object being read.
type objectState struct {
	key  string
	size int64
	read int64
	sum  hashWriter
	line int
}

// hashWriter is the running SHA-256 of an object.
type hashWriter interface {
	io.Writer
	Sum([]byte) []byte
}

// validate reads the whole file in spool and checks everything an import relies on; it returns
// an invalid (or too_large) error naming the first problem and its line.
func (s *Service) validate(spool *os.File, targetID string) (*plan, error) {
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	f, err := newFileReader(spool, s.opts.MaxImportBytes)
	if err != nil {
		return nil, err
	}
	h, err := f.header()
	if err != nil {
		return nil, err
	}
	c := &checker{
		from: h.Tenant.ID, to: targetID, counts: map[string]int64{}, ids: map[string]map[string]bool{},
		emails: map[string]bool{}, openKeys: map[string]bool{}, chats: map[string]cell.Chat{}, visitors: map[string]bool{},
		needChats: map[string]string{}, needVisits: map[string]string{}, messages: map[string]*run{}, notes: map[string]*run{},
		clientIDs: map[string]bool{}, deptNames: map[string]bool{}, shortcuts: map[string]bool{}, objectKeys: map[string]bool{},
	}
	for {
		l, err := f.line()
		if err == io.EOF {
			return nil, invalid("the file is incomplete: it ends without the trailer line")
		}
		if err != nil {
			return nil, err
		}
		if l.End {
			if c.obj != nil {
				return nil, invalid("line %d: object %q ends at %d of its %d bytes", f.n, c.obj.key, c.obj.read, c.obj.size)
			}
			if _, err := f.next(); err != io.EOF {
				if err == nil {
					err = invalid("line %d: nothing may follow the trailer", f.n)
				}
				return nil, err
			}
			break
		}
		if l.Collection != "" {
			if c.obj != nil {
				return nil, invalid("line %d: object %q is incomplete (%d of %d bytes) when a document follows", f.n, c.obj.key, c.obj.read, c.obj.size)
			}
			if err := c.document(f.n, l); err != nil {
				return nil, err
			}
			continue
		}
		if err := c.part(f.n, l); err != nil {
			return nil, err
		}
	}
	if err := checkCounts(h, c.counts, c.objects); err != nil {
		return nil, err
	}
	if err := c.references(); err != nil {
		return nil, err
	}
	return &plan{header: h, from: h.Tenant.ID, to: targetID}, nil
}

// document checks one document line.
func (c *checker) document(n int, l line) error {
	if !known(l.Collection) {
		return invalid("line %d: unknown collection %q (known: %s)", n, l.Collection, strings.Join(Collections, ", "))
	}
	id, raw, err := prepare(l.Collection, l.Doc, c.from, c.to)
	if err != nil {
		return invalid("line %d (%s): %v", n, l.Collection, err)
	}
	where := fmt.Sprintf("line %d (%s %q)", n, l.Collection, id)
	if c.ids[l.Collection] == nil {
		c.ids[l.Collection] = map[string]bool{}
	}
	if c.ids[l.Collection][id] {
		return invalid("%s: a second document with this _id", where)
	}
	c.ids[l.Collection][id] = true
	c.counts[l.Collection]++
	if err := c.check(l.Collection, id, raw, where); err != nil {
		return invalid("%s: %v", where, err)
	}
	return nil
}

// objectKeyPattern is the alphabet of object keys (S3's safe characters).
var objectKeyPattern = regexp.MustCompile(`^[A-Za-z0-9!_.*'()/-]+$`)

// check applies the rules of a collection to one document (already rewritten to the target).
func (c *checker) check(coll, id string, raw bson.Raw, where string) error {
	switch coll {
	case colUsers:
		var u cell.User
		if err := bson.Unmarshal(raw, &u); err != nil {
			return fmt.Errorf("not a user: %v", err)
		}
		if u.Email == "" || u.Email != strings.ToLower(strings.TrimSpace(u.Email)) || !strings.Contains(u.Email, "@") || len(u.Email) > 254 {
			return fmt.Errorf("email %q must be a lowercase email address", u.Email)
		}
		if c.emails[u.Email] {
			return fmt.Errorf("email %s is used by another user of the file", u.Email)
		}
		c.emails[u.Email] = true
		if len(u.Roles) == 0 {
			return errors.New("a user needs roles")
		}
		for _, r := range u.Roles {
			if r != cell.RoleAgent && r != cell.RoleTenantAdmin {
				return fmt.Errorf("role %q is not agent or tenant-admin", r)
			}
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return errors.New("passwordHash is not a bcrypt hash")
		}
		if u.Capacity < 0 || u.Capacity > cell.MaxCapacity {
			return fmt.Errorf("capacity must be 0 to %d", cell.MaxCapacity)
		}
	case colVisitors:
		var v cell.Visitor
		if err := bson.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("not a visitor: %v", err)
		}
		c.visitors[id] = true
	case colChats:
		var ch cell.Chat
		if err := bson.Unmarshal(raw, &ch); err != nil {
			return fmt.Errorf("not a chat: %v", err)
		}
		switch {
		case !ch.Status.Valid():
			return fmt.Errorf("status %q is unknown", ch.Status)
		case ch.VisitorID == "":
			return errors.New("visitorId is required")
		case ch.CreatedAt.IsZero():
			return errors.New("createdAt is required")
		case ch.LastSeq < 0 || ch.Assignment < 0:
			return errors.New("lastSeq and assignment must not be negative")
		case ch.Status.Open() && ch.OpenKey != ch.VisitorID:
			return errors.New("an open chat must have openKey equal to its visitorId")
		case !ch.Status.Open() && ch.OpenKey != "":
			return errors.New("a closed chat must not have an openKey")
		case ch.Status == cell.ChatActive && ch.AgentID == "":
			return errors.New("an active chat needs an agentId")
		}
		if ch.OpenKey != "" {
			if c.openKeys[ch.OpenKey] {
				return fmt.Errorf("visitor %s has a second open chat", ch.VisitorID)
			}
			c.openKeys[ch.OpenKey] = true
		}
		c.chats[id] = ch
		if _, ok := c.needVisits[ch.VisitorID]; !ok {
			c.needVisits[ch.VisitorID] = where
		}
	case colMessages, colNotes:
		var m cell.Message
		if err := bson.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("not a message: %v", err)
		}
		notes := coll == colNotes
		want := cellmongo.MessageID(m.ChatID, m.Seq)
		if notes {
			want = "n:" + want
		}
		switch {
		case m.ChatID == "":
			return errors.New("chatId is required")
		case m.Seq < 1:
			return errors.New("seq must be at least 1")
		case id != want:
			return fmt.Errorf("_id must be %q (chatId and seq)", want)
		case m.Private != notes:
			return errors.New("private must be true for notes and false for messages")
		case m.ClientMsgID == "":
			return errors.New("clientMsgId is required")
		case m.From.Role == "":
			return errors.New("from.role is required")
		}
		key := coll + "\x00" + m.ChatID + "\x00" + m.ClientMsgID
		if c.clientIDs[key] {
			return fmt.Errorf("clientMsgId %q is used twice in chat %s", m.ClientMsgID, m.ChatID)
		}
		c.clientIDs[key] = true
		runs := c.messages
		if notes {
			runs = c.notes
		}
		r := runs[m.ChatID]
		if r == nil {
			r = &run{}
			runs[m.ChatID] = r
		}
		r.count++
		r.max = max(r.max, m.Seq)
		c.need(m.ChatID, where)
	case colAttachments:
		var a cell.Attachment
		if err := bson.Unmarshal(raw, &a); err != nil {
			return fmt.Errorf("not an attachment: %v", err)
		}
		if a.ChatID == "" || a.Size < 0 {
			return errors.New("chatId is required and size must not be negative")
		}
		c.need(a.ChatID, where)
	case colSettings:
		var st cell.Settings
		if err := bson.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("not settings: %v", err)
		}
		if id != "settings:"+cell.SettingsKey || st.Key != cell.SettingsKey {
			return fmt.Errorf("the settings document must have _id %q and key %q", "settings:"+cell.SettingsKey, cell.SettingsKey)
		}
		if err := st.Normalize(); err != nil {
			return fmt.Errorf("settings are invalid: %s", cell.ErrorMessage(err))
		}
	case colDepartments:
		var d cell.Department
		if err := bson.Unmarshal(raw, &d); err != nil {
			return fmt.Errorf("not a department: %v", err)
		}
		name := strings.ToLower(d.Name)
		if name == "" || c.deptNames[name] {
			return fmt.Errorf("department name %q is empty or used twice", d.Name)
		}
		c.deptNames[name] = true
	case colCanned:
		var cr cell.CannedResponse
		if err := bson.Unmarshal(raw, &cr); err != nil {
			return fmt.Errorf("not a canned response: %v", err)
		}
		if cr.Shortcut == "" || c.shortcuts[cr.Shortcut] {
			return fmt.Errorf("shortcut %q is empty or used twice", cr.Shortcut)
		}
		c.shortcuts[cr.Shortcut] = true
	case colOffline:
		var m cell.OfflineMessage
		if err := bson.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("not an offline message: %v", err)
		}
	case colAudit:
		var e cell.AuditEntry
		if err := bson.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("not an audit entry: %v", err)
		}
	case colClaims:
		if _, ok := raw.Lookup("holder").StringValueOK(); !ok {
			return errors.New("a claim needs a string holder")
		}
	}
	return nil
}

// need records that where refers to chat id.
func (c *checker) need(chatID, where string) {
	if _, ok := c.needChats[chatID]; !ok {
		c.needChats[chatID] = where
	}
}

// references checks, after the whole file, that every reference resolves and that every chat's
// messages and notes are exactly seqs 1..n (with n ≥ the chat's lastSeq).
func (c *checker) references() error {
	for id, where := range c.needChats {
		if _, ok := c.chats[id]; !ok {
			return invalid("%s: chat %q is not in the file", where, id)
		}
	}
	for id, where := range c.needVisits {
		if !c.visitors[id] {
			return invalid("%s: visitor %q is not in the file", where, id)
		}
	}
	for id, ch := range c.chats {
		r := c.messages[id]
		if r == nil {
			r = &run{}
		}
		if r.count != r.max {
			return invalid("chat %s: its messages must have seqs 1..%d without gaps (the file holds %d)", id, r.max, r.count)
		}
		if r.max < ch.LastSeq {
			return invalid("chat %s: lastSeq is %d but the file holds its messages up to seq %d", id, ch.LastSeq, r.max)
		}
		if n := c.notes[id]; n != nil && n.count != n.max {
			return invalid("chat %s: its notes must have seqs 1..%d without gaps (the file holds %d)", id, n.max, n.count)
		}
	}
	return nil
}

// part checks one object part line.
func (c *checker) part(n int, l line) error {
	key := *l.Object
	if l.Data == nil {
		return invalid("line %d: object part %q has no data", n, key)
	}
	data := *l.Data
	if l.Offset == 0 {
		if c.obj != nil {
			return invalid("line %d: object %q ends at %d of its %d bytes", n, c.obj.key, c.obj.read, c.obj.size)
		}
		if err := checkObjectKey(key); err != nil {
			return invalid("line %d: %v", n, err)
		}
		if c.objectKeys[key] {
			return invalid("line %d: object %q appears twice", n, key)
		}
		c.objectKeys[key] = true
		if l.Size == nil || *l.Size < 0 {
			return invalid("line %d: the first part of object %q needs its size", n, key)
		}
		for k, v := range l.Metadata {
			if !metaKeyPattern.MatchString(k) || !printableASCII(v) {
				return invalid("line %d: object %q has invalid metadata %q", n, key, k)
			}
		}
		c.obj = &objectState{key: key, size: *l.Size, sum: sha256.New(), line: n}
		c.objects.Count++
	} else {
		switch {
		case c.obj == nil || c.obj.key != key:
			return invalid("line %d: part of object %q at offset %d without its first part", n, key, l.Offset)
		case l.Offset != c.obj.read:
			return invalid("line %d: part of object %q at offset %d, expected %d", n, key, l.Offset, c.obj.read)
		case l.Size != nil || l.ContentType != "" || l.Metadata != nil:
			return invalid("line %d: only the first part of object %q carries size, contentType and metadata", n, key)
		}
	}
	o := c.obj
	if len(data) > ChunkSize {
		return invalid("line %d: a part of object %q is larger than %d bytes", n, key, ChunkSize)
	}
	o.read += int64(len(data))
	c.objects.Bytes += int64(len(data))
	o.sum.Write(data)
	if o.read > o.size {
		return invalid("line %d: object %q is larger than its size %d", n, key, o.size)
	}
	if o.read < o.size {
		if l.SHA256 != "" {
			return invalid("line %d: only the last part of object %q carries sha256", n, key)
		}
		if len(data) == 0 {
			return invalid("line %d: an empty part of object %q before its end", n, key)
		}
		return nil
	}
	if got := hex.EncodeToString(o.sum.Sum(nil)); l.SHA256 != got {
		return invalid("line %d: object %q does not match its sha256 (damaged file)", n, key)
	}
	c.obj = nil
	return nil
}

// metaKeyPattern is an S3 user-metadata key as stored (lowercase).
var metaKeyPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,127}$`)

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return len(s) <= 1024
}

// checkObjectKey checks an object key relative to the tenant's prefix: a clean relative path of
// safe characters, at most 900 bytes.
func checkObjectKey(key string) error {
	if key == "" || len(key) > 900 || !objectKeyPattern.MatchString(key) || strings.HasPrefix(key, "/") ||
		path.Clean(key) != key || slices.Contains(strings.Split(key, "/"), "..") {
		return fmt.Errorf("object key %q must be a clean relative path (letters, digits and !_.*'()/-)", key)
	}
	return nil
}

// errNotString is returned for a missing or non-string _id.
var errNotString = errors.New("_id must be a non-empty string")

// prepare parses a document line's doc, refuses field names MongoDB would misread, rewrites
// every tenantId (and an attachment's key) from tenant from to tenant to, and returns its _id
// and BSON.
func prepare(coll string, doc []byte, from, to string) (string, bson.Raw, error) {
	if len(doc) == 0 {
		return "", nil, errors.New("doc is required")
	}
	var d bson.D
	if err := bson.UnmarshalExtJSON(doc, false, &d); err != nil {
		return "", nil, fmt.Errorf("doc is not a MongoDB Extended JSON document: %v", err)
	}
	if err := checkKeys(d); err != nil {
		return "", nil, err
	}
	var id string
	top := false
	for i, e := range d {
		switch e.Key {
		case "_id":
			s, ok := e.Value.(string)
			if !ok || s == "" {
				return "", nil, errNotString
			}
			id = s
		case "tenantId":
			if s, ok := e.Value.(string); !ok || s != from {
				return "", nil, fmt.Errorf("tenantId %v is not the exported tenant's %q", e.Value, from)
			}
			top = true
		case "key":
			if coll != colAttachments {
				continue
			}
			s, ok := e.Value.(string)
			if !ok || !strings.HasPrefix(s, controlplane.S3Prefix(from)) {
				return "", nil, fmt.Errorf("key must start with the exported tenant's prefix %s", controlplane.S3Prefix(from))
			}
			rel := strings.TrimPrefix(s, controlplane.S3Prefix(from))
			if err := checkObjectKey(rel); err != nil {
				return "", nil, err
			}
			d[i].Value = controlplane.S3Prefix(to) + rel
		}
	}
	if id == "" {
		return "", nil, errNotString
	}
	if !top {
		return "", nil, errors.New("tenantId is required")
	}
	if err := rewriteTenant(d, from, to); err != nil {
		return "", nil, err
	}
	raw, err := bson.Marshal(d)
	if err != nil {
		return "", nil, fmt.Errorf("doc cannot be stored: %v", err)
	}
	return id, raw, nil
}

// checkKeys refuses field names that are empty, start with '$' or hold '.' or NUL, at any depth.
func checkKeys(v any) error {
	switch x := v.(type) {
	case bson.D:
		for _, e := range x {
			if e.Key == "" || strings.HasPrefix(e.Key, "$") || strings.ContainsAny(e.Key, ".\x00") {
				return fmt.Errorf("field name %q is not allowed", e.Key)
			}
			if err := checkKeys(e.Value); err != nil {
				return err
			}
		}
	case bson.A:
		for _, e := range x {
			if err := checkKeys(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// rewriteTenant replaces every tenantId field (at any depth) holding from with to; a nested
// empty tenantId names no tenant and stays; a tenantId holding anything else is refused.
func rewriteTenant(v any, from, to string) error {
	switch x := v.(type) {
	case bson.D:
		for i, e := range x {
			if e.Key == "tenantId" {
				if s, ok := e.Value.(string); ok && s == "" {
					continue
				}
				if s, ok := e.Value.(string); !ok || s != from {
					return fmt.Errorf("tenantId %v is not the exported tenant's %q", e.Value, from)
				}
				x[i].Value = to
				continue
			}
			if err := rewriteTenant(e.Value, from, to); err != nil {
				return err
			}
		}
	case bson.A:
		for _, e := range x {
			if err := rewriteTenant(e, from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// gated are the collections whose documents make a tenant "not empty" for an import.
var gated = []string{colChats, colVisitors, colMessages, colNotes, colAttachments, colOffline, colDepartments, colCanned}

// gate refuses (conflict) a target that holds documents of the gated collections other than
// identical copies of the file's (left by an interrupted run of the same import).
func (s *Service) gate(ctx context.Context, t *controlplane.Tenant, spool *os.File, p *plan) error {
	db := s.client.Database(controlplane.DatabaseName(t.ID))
	existing := map[string]map[string]bson.Raw{}
	total := 0
	for _, c := range gated {
		cur, err := db.Collection(c).Find(ctx, bson.D{{Key: "tenantId", Value: t.ID}})
		if err != nil {
			return fmt.Errorf("transfer: read %s of the target: %w", c, err)
		}
		for cur.Next(ctx) {
			if existing[c] == nil {
				existing[c] = map[string]bson.Raw{}
			}
			existing[c][str(cur.Current, "_id")] = bytes.Clone(cur.Current)
			total++
		}
		err = cur.Err()
		_ = cur.Close(ctx)
		if err != nil {
			return fmt.Errorf("transfer: read %s of the target: %w", c, err)
		}
	}
	if total == 0 {
		return nil
	}
	err := s.scan(spool, p, func(l line, id string, raw bson.Raw) error {
		if ex, ok := existing[l.Collection][id]; ok && bytes.Equal(ex, raw) {
			delete(existing[l.Collection], id)
		}
		return nil
	}, nil)
	if err != nil {
		return err
	}
	var left []string
	for _, c := range gated {
		if n := len(existing[c]); n > 0 {
			left = append(left, fmt.Sprintf("%d %s", n, strings.ReplaceAll(c, "_", " ")))
		}
	}
	if len(left) == 0 {
		return nil
	}
	return controlplane.Errorf(controlplane.EConflict, "tenant %s already has data that is not from this file (%s): import only into a tenant without chats, e.g. a new one", t.Key, strings.Join(left, ", "))
}

// scan reads the (validated) file again, calling doc for every document line (with its rewritten
// id and BSON) and part for every object part line; either may be nil.
func (s *Service) scan(spool *os.File, p *plan, doc func(l line, id string, raw bson.Raw) error, part func(l line) error) error {
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return err
	}
	f, err := newFileReader(spool, s.opts.MaxImportBytes)
	if err != nil {
		return err
	}
	if _, err := f.header(); err != nil {
		return err
	}
	for {
		l, err := f.line()
		if err != nil {
			return err
		}
		switch {
		case l.End:
			return nil
		case l.Collection != "":
			if doc == nil {
				continue
			}
			id, raw, err := prepare(l.Collection, l.Doc, p.from, p.to)
			if err != nil {
				return err
			}
			if err := doc(l, id, raw); err != nil {
				return err
			}
		default:
			if part != nil {
				if err := part(l); err != nil {
					return err
				}
			}
		}
	}
}

// phases are the write passes of an import, in order: what nothing refers to first, chats last,
// so a chat a live cell can see already has its messages, and its agents exist.
var phases = [][]string{
	{colUsers, colSettings, colDepartments, colCanned, colVisitors, colOffline, colAudit, colClaims},
	{colAttachments, colNotes, colMessages},
	{colChats},
}

// apply writes the validated file into t: indexes first, then the phases (objects with the
// first), every document an upsert by _id, so running it again converges.
func (s *Service) apply(ctx context.Context, t *controlplane.Tenant, spool *os.File, p *plan, rep *Report) error {
	store, err := cellmongo.Open(ctx, s.opts.MongoURI, controlplane.DatabaseName(t.ID), t.ID)
	if err != nil {
		return err
	}
	err = store.EnsureIndexes(ctx)
	_ = store.Close(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	db := s.client.Database(controlplane.DatabaseName(t.ID))
	users, err := s.existingUsers(ctx, db, t.ID)
	if err != nil {
		return err
	}
	replaced := map[string]bool{}
	for i, phase := range phases {
		bulks := map[string]*bulk{}
		for _, c := range phase {
			bulks[c] = &bulk{c: db.Collection(c)}
		}
		var objects *objectWriter
		if i == 0 {
			objects = &objectWriter{s: s, to: t.ID, rep: rep}
			defer objects.close()
		}
		err := s.scan(spool, p, func(l line, id string, raw bson.Raw) error {
			b := bulks[l.Collection]
			if b == nil {
				return nil
			}
			if l.Collection == colUsers {
				if err := s.replaceUsers(ctx, db, t.ID, users, id, str(raw, "email"), replaced); err != nil {
					return err
				}
			}
			rep.Documents[l.Collection]++
			return b.add(ctx, id, raw)
		}, func(l line) error {
			if objects == nil {
				return nil
			}
			return objects.part(ctx, l)
		})
		if err != nil {
			return err
		}
		for _, c := range phase {
			if err := bulks[c].flush(ctx); err != nil {
				return err
			}
		}
	}
	for email := range replaced {
		rep.ReplacedUsers = append(rep.ReplacedUsers, email)
	}
	sort.Strings(rep.ReplacedUsers)
	return nil
}

// existingUser is a user of the target before the import.
type existingUser struct{ id, email string }

// existingUsers lists the target's users.
func (s *Service) existingUsers(ctx context.Context, db *mongo.Database, tenantID string) ([]existingUser, error) {
	cur, err := db.Collection(colUsers).Find(ctx, bson.D{{Key: "tenantId", Value: tenantID}})
	if err != nil {
		return nil, fmt.Errorf("transfer: read users of the target: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	var out []existingUser
	for cur.Next(ctx) {
		out = append(out, existingUser{id: str(cur.Current, "_id"), email: str(cur.Current, "email")})
	}
	return out, cur.Err()
}

// replaceUsers removes the target's users that the file's user (id, email) replaces: the one with
// the same email under another id (and its sessions), and notes any with the same id.
func (s *Service) replaceUsers(ctx context.Context, db *mongo.Database, tenantID string, users []existingUser, id, email string, replaced map[string]bool) error {
	for _, u := range users {
		switch {
		case u.id == id:
			if u.email != email {
				replaced[u.email] = true
			}
		case u.email == email:
			if _, err := db.Collection(colUsers).DeleteOne(ctx, bson.D{{Key: "_id", Value: u.id}}); err != nil {
				return fmt.Errorf("transfer: replace user %s: %w", email, err)
			}
			if _, err := db.Collection(colSessions).DeleteMany(ctx, bson.D{{Key: "tenantId", Value: tenantID}, {Key: "userId", Value: u.id}}); err != nil {
				return fmt.Errorf("transfer: end the sessions of user %s: %w", email, err)
			}
			replaced[u.email] = true
		}
	}
	return nil
}

// bulk batches upserts by _id into one collection.
type bulk struct {
	c      *mongo.Collection
	models []mongo.WriteModel
	size   int
}

// add queues an upsert of doc under id, writing the batch when it is full.
func (b *bulk) add(ctx context.Context, id string, doc bson.Raw) error {
	b.models = append(b.models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetReplacement(doc).SetUpsert(true))
	b.size += len(doc)
	if len(b.models) >= 200 || b.size >= 4<<20 {
		return b.flush(ctx)
	}
	return nil
}

// flush writes the queued upserts, in order.
func (b *bulk) flush(ctx context.Context) error {
	if len(b.models) == 0 {
		return nil
	}
	_, err := b.c.BulkWrite(ctx, b.models, options.BulkWrite().SetOrdered(true))
	b.models, b.size = b.models[:0], 0
	if err != nil {
		return fmt.Errorf("transfer: write %s: %w", b.c.Name(), err)
	}
	return nil
}

// objectWriter reassembles objects from their parts in a temporary file and uploads each under
// the target's prefix once complete.
type objectWriter struct {
	s    *Service
	to   string
	rep  *Report
	tmp  *os.File
	cur  line
	size int64
}

// part adds one part; the last one uploads the object.
func (o *objectWriter) part(ctx context.Context, l line) error {
	if l.Offset == 0 {
		if o.tmp == nil {
			f, err := o.s.tempFile("object-*")
			if err != nil {
				return err
			}
			o.tmp = f
		}
		if err := o.tmp.Truncate(0); err != nil {
			return err
		}
		if _, err := o.tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		o.cur, o.size = l, *l.Size
	}
	if _, err := o.tmp.Write(*l.Data); err != nil {
		return fmt.Errorf("transfer: object spool: %w", err)
	}
	if l.Offset+int64(len(*l.Data)) < o.size {
		return nil
	}
	if _, err := o.tmp.Seek(0, io.SeekStart); err != nil {
		return err
	}
	meta := map[string]string{}
	for k, v := range o.cur.Metadata {
		meta[k] = v
	}
	if _, ok := meta["tenantid"]; ok {
		meta["tenantid"] = o.to
	}
	in := &s3.PutObjectInput{
		Bucket: aws.String(o.s.opts.Bucket), Key: aws.String(controlplane.S3Prefix(o.to) + *o.cur.Object),
		Body: io.NewSectionReader(o.tmp, 0, o.size), ContentLength: aws.Int64(o.size), Metadata: meta,
	}
	if o.cur.ContentType != "" {
		in.ContentType = aws.String(o.cur.ContentType)
	}
	if _, err := o.s.opts.S3.PutObject(ctx, in); err != nil {
		return fmt.Errorf("transfer: write object %s: %w", *o.cur.Object, err)
	}
	o.rep.Objects.Count++
	o.rep.Objects.Bytes += o.size
	return nil
}

// close removes the temporary file.
func (o *objectWriter) close() {
	if o.tmp != nil {
		removeFile(o.tmp)
	}
}
