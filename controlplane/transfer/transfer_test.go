package transfer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.mongodb.org/mongo-driver/v2/bson"

	"atende/cell"
	"atende/cell/auth"
	cellmongo "atende/cell/mongodb"
	"atende/cell/service"
	"atende/controlplane"
	"atende/controlplane/transfer"
)

// pngBytes returns n bytes that sniff as image/png (the PNG signature, then random bytes that
// gzip cannot shrink), so an object spans several 1 MiB parts.
func pngBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	copy(b, "\x89PNG\r\n\x1a\n")
	return b
}

// ok sends a request that must succeed (any 2xx) and decodes the answer into out.
func (tc *testCell) ok(method, path, token string, body, out any) {
	tc.t.Helper()
	var raw json.RawMessage
	if got := tc.do(method, path, token, body, &raw); got < 200 || got > 299 {
		tc.t.Fatalf("%s %s: %d %s", method, path, got, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			tc.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// visitor opens a visitor session and returns its token.
func (tc *testCell) visitor(name, email string) string {
	tc.t.Helper()
	var vs service.VisitorSession
	tc.ok("POST", "/api/visitor/session", "", map[string]string{"name": name, "email": email}, &vs)
	return vs.VisitorToken
}

// populated is what populate made through the source cell's API.
type populated struct {
	agentID, attachmentID string
	resolved, queued      string // chat ids
	active                string
	png                   []byte
}

// populate uses the tenant the way its people do, through the cell's HTTP API: departments,
// an agent with a department and a capacity, a canned response, settings, chats in every state
// with messages, a note, labels, read receipts, a CSAT rating, an attachment (a 2.5 MiB object)
// and an offline message.
func populate(t *testing.T, src *testCell, adminPW string) populated {
	t.Helper()
	var p populated
	admin := src.login("admin@acme.test", adminPW)
	var sales, support cell.Department
	src.ok("POST", "/api/departments", admin, map[string]string{"name": "Sales"}, &sales)
	src.ok("POST", "/api/departments", admin, map[string]string{"name": "Support", "routing": "manual"}, &support)
	var created service.AgentCreated
	src.ok("POST", "/api/agents", admin, map[string]string{"email": "ana@acme.test", "name": "Ana", "password": "ana-password-1"}, &created)
	p.agentID = created.Agent.ID
	src.ok("PATCH", "/api/agents/"+p.agentID, admin, map[string]any{"departments": []string{sales.ID, support.ID}, "capacity": 2}, nil)
	ana := src.login("ana@acme.test", "ana-password-1")
	src.ok("POST", "/api/canned", admin, map[string]string{"shortcut": "hello", "title": "Hello", "body": "Hi! How can I help?"}, nil)
	var st cell.Settings
	src.ok("GET", "/api/settings", admin, nil, &st)
	st.SLA.FirstResponseSeconds = 90
	st.Branding.Title = "Acme Support"
	st.BusinessHours = cell.BusinessHours{TimeZone: "America/Sao_Paulo", Days: map[string][]string{"mon": {"09:00-18:00"}}}
	src.ok("PUT", "/api/settings", admin, st, nil)

	// A chat that went all the way: accepted, messages both ways, a note, an attachment,
	// labels, read receipts, resolved and rated.
	v1 := src.visitor("Vera", "vera@example.com")
	var chat cell.Chat
	src.ok("POST", "/api/chats", v1, map[string]string{"message": "Olá, preciso de ajuda ✓", "clientMsgId": "v1-1", "departmentId": sales.ID}, &chat)
	p.resolved = chat.ID
	src.ok("POST", "/api/chat/"+chat.ID+"/accept", ana, nil, nil)
	src.ok("POST", "/api/messages", ana, map[string]string{"chatId": chat.ID, "body": "Hi Vera, Ana here.", "clientMsgId": "a-1"}, nil)
	src.ok("POST", "/api/messages", ana, map[string]any{"chatId": chat.ID, "body": "VIP customer", "clientMsgId": "a-n1", "private": true}, nil)
	p.png = pngBytes(2<<20 + 512<<10)
	var up service.Upload
	src.ok("POST", "/api/attachments", v1, map[string]any{"chatId": chat.ID, "filename": "receipt.png", "contentType": "image/png", "size": len(p.png)}, &up)
	put, _ := http.NewRequest(up.UploadMethod, up.UploadURL, bytes.NewReader(p.png))
	for k, v := range up.UploadHeaders {
		put.Header.Set(k, v)
	}
	put.ContentLength = int64(len(p.png))
	resp, err := http.DefaultClient.Do(put)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	p.attachmentID = up.AttachmentID
	src.ok("POST", "/api/messages", v1, map[string]string{"chatId": chat.ID, "body": "here is the receipt", "clientMsgId": "v1-2", "attachmentId": up.AttachmentID}, nil)
	src.ok("POST", "/api/messages", v1, map[string]string{"chatId": chat.ID, "body": "thanks! 🙏", "clientMsgId": "v1-3"}, nil)
	src.ok("PUT", "/api/chats/"+chat.ID+"/labels", ana, map[string][]string{"labels": {"vip", "billing"}}, nil)
	src.ok("POST", "/api/chats/"+chat.ID+"/read", ana, map[string]int{"seq": 3}, nil)
	src.ok("POST", "/api/chat/"+chat.ID+"/resolve", ana, nil, nil)
	src.ok("POST", "/api/chats/"+chat.ID+"/csat", v1, map[string]any{"score": 5, "comment": "great"}, nil)

	// A chat waiting in the queue.
	v2 := src.visitor("Quentin", "")
	src.ok("POST", "/api/chats", v2, map[string]string{"message": "anyone there?", "clientMsgId": "v2-1"}, &chat)
	p.queued = chat.ID

	// An active chat: it holds one of Ana's two capacity slots.
	v3 := src.visitor("Aline", "")
	src.ok("POST", "/api/chats", v3, map[string]string{"message": "hello", "clientMsgId": "v3-1", "departmentId": sales.ID}, &chat)
	p.active = chat.ID
	src.ok("POST", "/api/chat/"+chat.ID+"/accept", ana, nil, nil)
	src.ok("POST", "/api/messages", ana, map[string]string{"chatId": chat.ID, "body": "how can I help?", "clientMsgId": "a-2"}, nil)

	v4 := src.visitor("Otto", "otto@example.com")
	src.ok("POST", "/api/offline-messages", v4, map[string]string{"name": "Otto", "email": "otto@example.com", "message": "call me back"}, nil)
	return p
}

// TestRoundTripLosesNothing populates a tenant through its cell's API, exports it, imports the
// file into a new live tenant (whose cell runs) and compares every document (modulo tenantId)
// and every object byte for byte; then the target's cell serves the imported data: logins with
// the old passwords, history, notes, the attachment, the next seq, department names and
// capacity slots.
func TestRoundTripLosesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	srcT := e.tenant("acme", controlplane.StateLive)
	src := startCell(t, srcT, "admin@acme.test")
	p := populate(t, src, adminPassword)
	time.Sleep(300 * time.Millisecond) // the lastSeq hints are written every 100 ms
	src.stop()                         // a quiet source, so the comparison below is exact

	var file bytes.Buffer
	h, err := e.svc.Export(ctx, "acme", "tester", &file)
	if err != nil {
		t.Fatal(err)
	}
	verified, err := transfer.Verify(bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if verified.Tenant != (transfer.TenantInfo{ID: srcT.ID, Key: "acme", Name: "Acme", Plan: controlplane.PlanPro}) || verified.Documents() != h.Documents() {
		t.Fatalf("header %+v, verified %+v", h, verified)
	}
	want := map[string]int64{"chats": 3, "visitors": 4, "messages": 7, "notes": 1, "attachments": 1, "users": 2,
		"departments": 2, "canned": 1, "settings": 1, "offline_messages": 1}
	for c, n := range want {
		if h.Counts[c] != n {
			t.Errorf("header counts %s = %d, want %d (%v)", c, h.Counts[c], n, h.Counts)
		}
	}
	if h.Objects.Count != 1 || h.Objects.Bytes != int64(len(p.png)) {
		t.Errorf("header objects %+v", h.Objects)
	}
	text := strings.Join(lines(t, file.Bytes()), "\n")
	for _, absent := range []string{`"collection":"sessions"`, `"_id":"refresh:`, `"_id":"ticket:`, `webhook_`} {
		if strings.Contains(text, absent) {
			t.Errorf("the export holds %s", absent)
		}
	}
	if !strings.Contains(text, `"passwordHash":"$2a$`) {
		t.Error("the export lacks the password hashes")
	}

	// The target: a new live tenant whose cell runs, whose admin has the same email as the
	// source's (replaced by the import) and which has one more user (kept).
	dstT := e.tenant("globex", controlplane.StateLive)
	dst := startCell(t, dstT, "admin@acme.test")
	dstAdmin := dst.login("admin@acme.test", adminPassword)
	dst.ok("POST", "/api/agents", dstAdmin, map[string]string{"email": "keeper@globex.test", "password": "keeper-password-1"}, nil)
	if err := dst.Store.SetUserPassword(ctx, mustUser(t, dst.Store, "admin@acme.test").ID, hashOf(t, "globex-admin-pw")); err != nil {
		t.Fatal(err)
	}
	rep, err := e.svc.Import(ctx, "globex", "tester", bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Source != "file" || rep.From == nil || rep.From.ID != srcT.ID || rep.Tenant.ID != dstT.ID ||
		!slices.Equal(rep.ReplacedUsers, []string{"admin@acme.test"}) || rep.Objects != h.Objects {
		t.Fatalf("report %+v", rep)
	}
	for _, c := range transfer.Collections {
		if rep.Documents[c] != h.Counts[c] {
			t.Errorf("report documents %s = %d, header %d", c, rep.Documents[c], h.Counts[c])
		}
	}

	// Every document, modulo tenantId.
	srcDB, dstDB := controlplane.DatabaseName(srcT.ID), controlplane.DatabaseName(dstT.ID)
	compared := 0
	for _, c := range transfer.Collections {
		srcDocs, dstDocs := dbDocs(t, srcDB, c, srcT.ID), dbDocs(t, dstDB, c, dstT.ID)
		n := 0
		for id, doc := range srcDocs {
			if c == "claims" && (strings.HasPrefix(id, "refresh:") || strings.HasPrefix(id, "ticket:")) ||
				c == "audit" && strings.Contains(doc, `"tenant.export"`) {
				continue
			}
			n++
			if dstDocs[id] != doc {
				t.Errorf("%s %s:\nsource %s\ntarget %s", c, id, doc, dstDocs[id])
			}
		}
		if int64(n) != h.Counts[c] {
			t.Errorf("%s: %d source documents compared, the export holds %d", c, n, h.Counts[c])
		}
		extra := len(dstDocs) - n
		switch c {
		case "users":
			if extra != 1 { // keeper
				t.Errorf("users: %d extra in the target, want 1 (keeper)", extra)
			}
		case "audit", "claims":
		default:
			if extra != 0 {
				t.Errorf("%s: %d documents in the target that the source lacks", c, extra)
			}
		}
		compared += n
	}
	t.Logf("compared %d documents and %d objects", compared, h.Objects.Count)
	srcObj, dstObj := objects(t, srcT.ID), objects(t, dstT.ID)
	if len(srcObj) != 1 || len(dstObj) != len(srcObj) {
		t.Fatalf("objects: source %d, target %d", len(srcObj), len(dstObj))
	}
	for key, so := range srcObj {
		do, ok := dstObj[key]
		if !ok || !bytes.Equal(so.data, do.data) || !bytes.Equal(so.data, p.png) || so.contentType != do.contentType ||
			so.metadata["tenantid"] != srcT.ID || do.metadata["tenantid"] != dstT.ID {
			t.Fatalf("object %s: source %d bytes %s %v, target %d bytes %s %v", key, len(so.data), so.contentType, so.metadata, len(do.data), do.contentType, do.metadata)
		}
	}
	if n, _ := mongoc.Database(dstDB).Collection("sessions").CountDocuments(ctx, bson.D{{Key: "userId", Value: p.agentID}}); n != 0 {
		t.Errorf("%d sessions of the source's agent in the target", n)
	}

	// Importing the same file again changes nothing and is allowed (an interrupted import can be
	// run again).
	if _, err := e.svc.Import(ctx, "globex", "tester", bytes.NewReader(file.Bytes())); err != nil {
		t.Fatalf("second import of the same file: %v", err)
	}

	// The target's cell serves the imported tenant.
	time.Sleep(2100 * time.Millisecond) // the cell's user and settings caches
	if dst.do("POST", "/api/auth/login", "", map[string]string{"email": "admin@acme.test", "password": "globex-admin-pw"}, nil) != 401 {
		t.Error("the replaced admin's password still works")
	}
	admin := dst.login("admin@acme.test", adminPassword)
	ana := dst.login("ana@acme.test", "ana-password-1")
	dst.login("keeper@globex.test", "keeper-password-1")
	var hist service.History
	dst.ok("GET", "/api/chats/"+p.resolved+"/messages", ana, nil, &hist)
	if len(hist.Messages) != 4 || hist.Messages[0].Body != "Olá, preciso de ajuda ✓" || hist.Messages[3].Body != "thanks! 🙏" || !hist.Complete {
		t.Fatalf("history %+v", hist)
	}
	var notes service.History
	dst.ok("GET", "/api/chats/"+p.resolved+"/notes", ana, nil, &notes)
	if len(notes.Messages) != 1 || notes.Messages[0].Body != "VIP customer" {
		t.Fatalf("notes %+v", notes)
	}
	var dl service.Download
	dst.ok("GET", "/api/attachments/"+p.attachmentID, ana, nil, &dl)
	got, err := http.Get(dl.URL)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !bytes.Equal(data, p.png) || !strings.Contains(dl.URL, controlplane.S3Prefix(dstT.ID)) {
		t.Fatalf("attachment: %d bytes from %s", len(data), dl.URL)
	}
	var msg cell.Message
	dst.ok("POST", "/api/messages", ana, map[string]string{"chatId": p.active, "body": "still here", "clientMsgId": "a-3"}, &msg)
	if msg.Seq != 3 {
		t.Fatalf("the next message of the active chat got seq %d, want 3", msg.Seq)
	}
	if st := dst.do("POST", "/api/departments", admin, map[string]string{"name": "sales"}, nil); st != 409 {
		t.Fatalf("a second department named sales: %d, want 409 (the name claim was carried)", st)
	}
	// Ana's capacity is 2 and the active chat holds one slot: one more accept, not two.
	var c1, c2 cell.Chat
	dst.ok("POST", "/api/chats", dst.visitor("New", ""), map[string]string{"message": "1", "clientMsgId": "n-1"}, &c1)
	dst.ok("POST", "/api/chats", dst.visitor("Newer", ""), map[string]string{"message": "2", "clientMsgId": "n-2"}, &c2)
	dst.ok("POST", "/api/chat/"+c1.ID+"/accept", ana, nil, nil)
	if st := dst.do("POST", "/api/chat/"+c2.ID+"/accept", ana, nil, nil); st != 409 {
		t.Fatalf("a third accept for an agent of capacity 2: %d, want 409 (the slot claim was carried)", st)
	}

	// Now the target has chats of its own: another import is refused.
	_, err = e.svc.Import(ctx, "globex", "tester", bytes.NewReader(file.Bytes()))
	if controlplane.ErrorCode(err) != controlplane.EConflict || !strings.Contains(err.Error(), "chats") {
		t.Fatalf("import into a tenant with chats: %v", err)
	}

	// Audited: in the registry's events and in each tenant's own audit log.
	if ev := e.events(srcT.ID); !strings.HasPrefix(ev[len(ev)-1], "exported by super-admin tester: ") {
		t.Errorf("source events %q", ev)
	}
	if ev := e.events(dstT.ID); !strings.Contains(ev[len(ev)-1], "imported by super-admin tester from the export of tenant acme") {
		t.Errorf("target events %q", ev)
	}
	for db, action := range map[string]string{srcDB: "tenant.export", dstDB: "tenant.import"} {
		n, _ := mongoc.Database(db).Collection("audit").CountDocuments(ctx, bson.D{{Key: "action", Value: action}, {Key: "actor.role", Value: "super-admin"}})
		if n == 0 {
			t.Errorf("%s: no %s audit entry", db, action)
		}
	}
}

func hashOf(t *testing.T, pw string) string {
	h, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustUser(t *testing.T, s *cellmongo.Store, email string) cell.User {
	u, err := s.UserByEmail(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// seeded is a tenant written directly through the cell's store.
type seeded struct {
	chat, agent, visitor string
}

// seed writes a small tenant through the cell's store: a user, a visitor, an active chat with 3
// messages and a note, an attachment with its object, settings, a department, a canned response,
// an offline message, an audit entry, a session and claims.
func seed(t *testing.T, tn *controlplane.Tenant) seeded {
	t.Helper()
	ctx := context.Background()
	store, err := cellmongo.Open(ctx, mongoURI, controlplane.DatabaseName(tn.ID), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	u := cell.User{ID: auth.RandomID(), Email: "seed@acme.test", Name: "Seed", Roles: []string{cell.RoleAgent}, PasswordHash: hashOf(t, "seed-password-1"), CreatedAt: now, Departments: []string{}}
	v := cell.Visitor{ID: auth.RandomID(), Name: "Vi", CreatedAt: now}
	c := cell.Chat{ID: auth.RandomID(), Status: cell.ChatActive, VisitorID: v.ID, Visitor: v, AgentID: u.ID, AgentName: u.Name,
		CreatedAt: now, AcceptedAt: &now, LastActivityAt: now, LastSeq: 3, OpenKey: v.ID, Labels: []string{}, Assignment: 1,
		SlotID: cellmongo.SlotID(u.ID, 0), History: []cell.ChatTransition{{Type: cell.TransitionCreated, To: cell.ChatQueued, At: now}}}
	att := cell.Attachment{ID: auth.RandomID(), ChatID: c.ID, Key: controlplane.S3Prefix(tn.ID) + "c/" + c.ID + "/" + auth.RandomID(),
		Filename: "a.png", ContentType: "image/png", Size: 3000, CreatedAt: now}
	st := cell.Settings{}
	if err := st.Normalize(); err != nil {
		t.Fatal(err)
	}
	steps := []error{
		store.CreateUser(ctx, &u), store.CreateVisitor(ctx, &v), store.InsertChat(ctx, &c),
		store.InsertAttachment(ctx, &att), store.SaveSettings(ctx, &st),
		store.CreateDepartment(ctx, &cell.Department{ID: auth.RandomID(), Name: "Sales", CreatedAt: now}),
		store.CreateCanned(ctx, &cell.CannedResponse{ID: auth.RandomID(), Shortcut: "hi", Body: "Hello!", CreatedAt: now}),
		store.InsertOfflineMessage(ctx, &cell.OfflineMessage{ID: auth.RandomID(), Name: "O", Email: "o@x.test", Message: "call", CreatedAt: now}),
		store.InsertAudit(ctx, &cell.AuditEntry{ID: auth.RandomID(), At: now, Action: "login", Outcome: cell.OutcomeOK}),
		store.InsertSession(ctx, &cell.Session{ID: auth.RandomID(), UserID: u.ID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}),
	}
	for i := int64(1); i <= 3; i++ {
		steps = append(steps, store.InsertMessage(ctx, &cell.Message{ChatID: c.ID, Seq: i, ClientMsgID: fmt.Sprint("m", i),
			From: cell.Author{Role: cell.RoleVisitor, ID: v.ID, Name: v.Name}, Body: fmt.Sprint("message ", i), CreatedAt: now}))
	}
	steps = append(steps, store.InsertMessage(ctx, &cell.Message{ChatID: c.ID, Seq: 1, ClientMsgID: "n1", Private: true,
		From: cell.Author{Role: cell.RoleAgent, ID: u.ID, Name: u.Name}, Body: "a note", CreatedAt: now}))
	for _, claim := range [][2]string{{cellmongo.SlotID(u.ID, 0), c.ID}, {"assign:" + c.ID + ":1", u.ID}, {"refresh:" + auth.RandomID(), u.ID}} {
		_, _, err := store.Claim(ctx, claim[0], claim[1])
		steps = append(steps, err)
	}
	for _, err := range steps {
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s3Bucket), Key: aws.String(att.Key), Body: bytes.NewReader(pngBytes(3000)),
		ContentType: aws.String("image/png"), Metadata: map[string]string{"tenantid": tn.ID}})
	if err != nil {
		t.Fatal(err)
	}
	return seeded{chat: c.ID, agent: u.ID, visitor: v.ID}
}

// edit applies fn to the decoded JSON of the first line matching match (a substring) and
// re-encodes it; fn may also return nil to drop the line.
func edit(t *testing.T, ls []string, match string, fn func(map[string]any) map[string]any) []string {
	t.Helper()
	out := slices.Clone(ls)
	for i, l := range out {
		if !strings.Contains(l, match) {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		m = fn(m)
		if m == nil {
			return slices.Delete(out, i, i+1)
		}
		b, _ := json.Marshal(m)
		out[i] = string(b)
		return out
	}
	t.Fatalf("no line contains %q", match)
	return nil
}

// recount fixes the header's count of collection c by delta.
func recount(t *testing.T, ls []string, c string, delta int) []string {
	return edit(t, ls, `"format"`, func(h map[string]any) map[string]any {
		counts := h["counts"].(map[string]any)
		counts[c] = counts[c].(float64) + float64(delta)
		return h
	})
}

// doc returns the doc of a document line as a map (for edits).
func docOf(m map[string]any) map[string]any { return m["doc"].(map[string]any) }

// TestImportRefusesBadFilesAndWritesNothing: every kind of bad file is refused with 400-class
// errors naming the problem, and the target stays empty (no document, no object).
func TestImportRefusesBadFilesAndWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	srcT := e.tenant("acme", controlplane.StateLive)
	s := seed(t, srcT)
	var file bytes.Buffer
	if _, err := e.svc.Export(ctx, "acme", "tester", &file); err != nil {
		t.Fatal(err)
	}
	good := lines(t, file.Bytes())
	dstT := e.tenant("empty", controlplane.StateLive)
	msgID := func(seq int) string { return fmt.Sprintf(`"_id":"%s:%012d"`, s.chat, seq) }
	for _, tc := range []struct {
		name string
		file []byte
		want string
	}{
		{"not gzip", []byte("hello, world"), "not a gzip stream"},
		{"empty", pack(nil), "not an export header"},
		{"not an export", pack([]string{`{"hello":"world"}`}), "not an export header"},
		{"wrong format", pack(edit(t, good, `"format"`, func(h map[string]any) map[string]any { h["format"] = "zip"; return h })), `format "zip"`},
		{"future version", pack(edit(t, good, `"format"`, func(h map[string]any) map[string]any { h["version"] = 2; return h })), "version 2 is not supported"},
		{"truncated", file.Bytes()[:file.Len()/2], "damaged"},
		{"no trailer", pack(good[:len(good)-1]), "ends without the trailer"},
		{"after the trailer", pack(append(slices.Clone(good), `{"end":true}`)), "nothing may follow the trailer"},
		{"a line is not JSON", pack(slices.Insert(slices.Clone(good), 1, `{"collection":`)), "line 2 is not valid"},
		{"two kinds in a line", pack(slices.Insert(slices.Clone(good), 1, `{"collection":"users","end":true}`)), "exactly one of"},
		{"count mismatch", pack(edit(t, good, `"collection":"canned"`, func(map[string]any) map[string]any { return nil })), "announces 1 canned documents, the file holds 0"},
		{"unknown collection", pack(recount(t, edit(t, good, `"collection":"canned"`, func(m map[string]any) map[string]any { m["collection"] = "sessions"; return m }), "canned", -1)), `unknown collection "sessions"`},
		{"a gap in the seqs", pack(recount(t, edit(t, good, msgID(2), func(map[string]any) map[string]any { return nil }), "messages", -1)), "without gaps"},
		{"lastSeq beyond the messages", pack(recount(t, edit(t, good, msgID(3), func(map[string]any) map[string]any { return nil }), "messages", -1)), "lastSeq is 3"},
		{"a message of no chat", pack(edit(t, good, msgID(1), func(m map[string]any) map[string]any {
			docOf(m)["chatId"] = "ghost"
			docOf(m)["_id"] = "ghost:000000000001"
			return m
		})), `chat "ghost" is not in the file`},
		{"a second message id", pack(edit(t, good, msgID(2), func(m map[string]any) map[string]any { docOf(m)["_id"] = s.chat + ":000000000009"; return m })), "_id must be"},
		{"duplicate _id", pack(recount(t, slices.Insert(slices.Clone(good), 2, good[slices.IndexFunc(good, func(l string) bool { return strings.Contains(l, `"collection":"users"`) })]), "users", 1)), "a second document with this _id"},
		{"a $ field", pack(edit(t, good, `"collection":"canned"`, func(m map[string]any) map[string]any { docOf(m)["$where"] = "1"; return m })), `field name "$where"`},
		{"a dotted field", pack(edit(t, good, `"collection":"canned"`, func(m map[string]any) map[string]any { docOf(m)["a.b"] = "1"; return m })), `field name "a.b"`},
		{"another tenant's document", pack(edit(t, good, `"collection":"canned"`, func(m map[string]any) map[string]any { docOf(m)["tenantId"] = "someone-else"; return m })), "is not the exported tenant's"},
		{"a nested tenantId of another tenant", pack(edit(t, good, `"collection":"chats"`, func(m map[string]any) map[string]any {
			docOf(m)["visitor"].(map[string]any)["tenantId"] = "someone-else"
			return m
		})), "is not the exported tenant's"},
		{"no tenantId", pack(edit(t, good, `"collection":"canned"`, func(m map[string]any) map[string]any { delete(docOf(m), "tenantId"); return m })), "tenantId is required"},
		{"an attachment key outside the prefix", pack(edit(t, good, `"collection":"attachments"`, func(m map[string]any) map[string]any { docOf(m)["key"] = "t/other/c/x/y"; return m })), "prefix"},
		{"not a bcrypt hash", pack(edit(t, good, `"collection":"users"`, func(m map[string]any) map[string]any { docOf(m)["passwordHash"] = "hunter2"; return m })), "not a bcrypt hash"},
		{"a wrong type", pack(edit(t, good, `"collection":"chats"`, func(m map[string]any) map[string]any { docOf(m)["lastSeq"] = "three"; return m })), "not a chat"},
		{"invalid settings", pack(edit(t, good, `"collection":"settings"`, func(m map[string]any) map[string]any {
			docOf(m)["defaultCapacity"] = map[string]string{"$numberInt": "99"}
			return m
		})), "defaultCapacity"},
		{"a chat's visitor missing", pack(recount(t, edit(t, good, `"collection":"visitors"`, func(map[string]any) map[string]any { return nil }), "visitors", -1)), "visitor"},
		{"a damaged object", pack(edit(t, good, `"object":`, func(m map[string]any) map[string]any {
			data, err := base64.StdEncoding.DecodeString(m["data"].(string))
			if err != nil {
				t.Fatal(err)
			}
			data[20] ^= 1
			m["data"] = base64.StdEncoding.EncodeToString(data)
			return m
		})), "sha256"},
		{"an object key escaping the prefix", pack(edit(t, good, `"object":`, func(m map[string]any) map[string]any { m["object"] = "../x/y"; return m })), "clean relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.Import(ctx, "empty", "tester", bytes.NewReader(tc.file))
			if controlplane.ErrorCode(err) != controlplane.EInvalid || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want invalid mentioning %q", err, tc.want)
			}
		})
	}
	if got := collections(t, controlplane.DatabaseName(dstT.ID)); len(got) != 0 {
		t.Fatalf("a refused import wrote %v", got)
	}
	if got := objects(t, dstT.ID); len(got) != 0 {
		t.Fatalf("a refused import wrote %d objects", len(got))
	}
	if ev := e.events(dstT.ID); len(ev) != 1 {
		t.Fatalf("refused imports recorded events %q", ev)
	}
	// The good file goes in.
	if _, err := e.svc.Import(ctx, "empty", "tester", bytes.NewReader(pack(good))); err != nil {
		t.Fatal(err)
	}
}

// TestImportAndExportStatesAndConflicts: unknown tenants, tenants in the wrong state, and targets
// holding other data are refused without writing; importing a tenant's own export into itself is
// a no-op.
func TestImportAndExportStatesAndConflicts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	srcT := e.tenant("acme", controlplane.StateLive)
	seed(t, srcT)
	var file bytes.Buffer
	if _, err := e.svc.Export(ctx, srcT.ID, "tester", &file); err != nil {
		t.Fatal(err)
	}
	busy := e.tenant("busy", controlplane.StateSuspended)
	seed(t, busy)
	before := collections(t, controlplane.DatabaseName(busy.ID))
	e.tenant("pending", controlplane.StateSuspendRequested)
	e.tenant("newborn", controlplane.StateCreationRequested)
	for _, tc := range []struct {
		name, target, code, message string
	}{
		{"unknown", "nobody", controlplane.ENotFound, ""},
		{"not settled", "pending", controlplane.EConflict, "import into a live or suspended tenant"},
		{"no cell yet", "newborn", controlplane.EConflict, "import into a live or suspended tenant"},
		{"other chats", "busy", controlplane.EConflict, "already has data that is not from this file (1 chats, 1 visitors, 3 messages, 1 notes, 1 attachments, 1 offline messages, 1 departments, 1 canned)"},
	} {
		_, err := e.svc.Import(ctx, tc.target, "tester", bytes.NewReader(file.Bytes()))
		if controlplane.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.message) {
			t.Errorf("%s: %v, want %s %q", tc.name, err, tc.code, tc.message)
		}
	}
	if after := collections(t, controlplane.DatabaseName(busy.ID)); !slices.Equal(before, after) {
		t.Errorf("a refused import changed the target: %v → %v", before, after)
	}
	if _, err := e.svc.Import(ctx, "acme", "tester", bytes.NewReader(file.Bytes())); err != nil {
		t.Errorf("importing a tenant's own export into itself: %v", err)
	}
	for _, tc := range []struct {
		target, code string
	}{{"nobody", controlplane.ENotFound}, {"newborn", controlplane.EConflict}, {"pending", ""}, {"busy", ""}} {
		_, err := e.svc.Export(ctx, tc.target, "tester", io.Discard)
		if controlplane.ErrorCode(err) != tc.code {
			t.Errorf("export %s: %v, want %q", tc.target, err, tc.code)
		}
	}
}

// TestExportOfALiveTenantIsConsistent: what a live cell writes during an export is either wholly
// in the file or not at all: messages and notes after a gap, documents of chats created after the
// chats were read, and single-use claims stay out.
func TestExportOfALiveTenantIsConsistent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tn := e.tenant("acme", controlplane.StateLive)
	s := seed(t, tn)
	store, err := cellmongo.Open(ctx, mongoURI, controlplane.DatabaseName(tn.ID), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	now := time.Now().UTC()
	from := cell.Author{Role: cell.RoleVisitor, ID: s.visitor, Name: "Vi"}
	for _, m := range []cell.Message{
		{ChatID: s.chat, Seq: 5, ClientMsgID: "after-a-gap", From: from, Body: "5", CreatedAt: now},       // 4 is still being written
		{ChatID: s.chat, Seq: 3, ClientMsgID: "n3", From: from, Body: "n", CreatedAt: now, Private: true}, // note 2 is still being written
		{ChatID: "later-chat", Seq: 1, ClientMsgID: "x", From: from, Body: "x", CreatedAt: now},
	} {
		if err := store.InsertMessage(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	for _, claim := range [][2]string{{"ticket:abc", "u"}, {"slot:" + s.agent + ":1", "later-chat"}, {"assign:later-chat:1", s.agent}, {"csat:" + s.chat, "v"}} {
		if _, _, err := store.Claim(ctx, claim[0], claim[1]); err != nil {
			t.Fatal(err)
		}
	}
	var file bytes.Buffer
	h, err := e.svc.Export(ctx, "acme", "tester", &file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(lines(t, file.Bytes()), "\n")
	if h.Counts["messages"] != 3 || h.Counts["notes"] != 1 || strings.Contains(text, "later-chat") || strings.Contains(text, "after-a-gap") ||
		strings.Contains(text, "ticket:") || strings.Contains(text, "refresh:") || !strings.Contains(text, `"_id":"csat:`+s.chat) ||
		!strings.Contains(text, `"_id":"slot:`+s.agent+`:0"`) {
		t.Fatalf("counts %v\n%s", h.Counts, text)
	}
	if _, err := e.svc.Import(ctx, e.tenant("copy", controlplane.StateLive).ID, "tester", bytes.NewReader(file.Bytes())); err != nil {
		t.Fatal(err)
	}
}

// TestOneImportPerTenantAtATime: while an import into a tenant reads its file, a second import
// into the same tenant is refused (two files must not interleave); the first one completes.
func TestOneImportPerTenantAtATime(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	seed(t, e.tenant("acme", controlplane.StateLive))
	var file bytes.Buffer
	if _, err := e.svc.Export(ctx, "acme", "tester", &file); err != nil {
		t.Fatal(err)
	}
	e.tenant("target", controlplane.StateLive)
	pr, pw := io.Pipe()
	first := make(chan error, 1)
	go func() {
		_, err := e.svc.Import(ctx, "target", "tester", pr)
		first <- err
	}()
	data := file.Bytes()
	if _, err := pw.Write(data[:10]); err != nil { // read by the first import: it holds the lock
		t.Fatal(err)
	}
	_, err := e.svc.Import(ctx, "target", "tester", bytes.NewReader(data))
	if controlplane.ErrorCode(err) != controlplane.EConflict || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("a concurrent import: %v", err)
	}
	pw.Write(data[10:])
	pw.Close()
	if err := <-first; err != nil {
		t.Fatalf("the first import: %v", err)
	}
	if _, err := e.svc.Import(ctx, "target", "tester", bytes.NewReader(data)); err != nil {
		t.Fatalf("an import after the first one ended: %v", err)
	}
}
