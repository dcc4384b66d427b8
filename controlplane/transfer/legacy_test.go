package transfer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"atende/cell"
	"atende/cell/auth"
	"atende/cell/service"
	"atende/controlplane"
	"atende/controlplane/transfer"
)

// TestLegacyMigration seeds a database of the single-tenant app (no tenantId, ObjectIds) in the
// embedded FerretDB, migrates it into a live tenant whose cell runs, and checks the mapping
// document by document, the report, the indexes, and that the cell serves the result: the
// legacy passwords log in, histories are in createdAt order, the next message continues the seqs.
func TestLegacyMigration(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dbName := "legacy_" + auth.RandomID()[:8]
	ldb := mongoc.Database(dbName)
	now := time.Now().UTC().Truncate(time.Millisecond)
	ago := func(m int) time.Time { return now.Add(-time.Duration(m) * time.Minute) }
	adminID, agentID, carolID, daveID, dupID := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
	adminHash, agentHash := hashOf(t, "legacy-admin-pw"), hashOf(t, "legacy-agent-pw")
	user := func(id bson.ObjectID, name, email, password, role string) any {
		return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: name}, {Key: "email", Value: email}, {Key: "password", Value: password}, {Key: "role", Value: role}}
	}
	if _, err := ldb.Collection("users").InsertMany(ctx, []any{
		user(adminID, "Alice Admin", "Alice@Legacy.test", adminHash, "admin"),
		user(agentID, "Bob", "bob@legacy.test", agentHash, "agent"),
		user(carolID, "Carol", "carol@legacy.test", "plaintext", "agent"),
		user(daveID, "Dave", "dave@legacy.test", agentHash, "owner"),
		user(dupID, "Bobby", "BOB@legacy.test", agentHash, "agent"),
	}); err != nil {
		t.Fatal(err)
	}
	c1, c2, c3, c4, c5 := bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID(), bson.NewObjectID()
	if _, err := ldb.Collection("chats").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: c1}, {Key: "visitorName", Value: "Vic"}, {Key: "visitorEmail", Value: "vic@example.com"}, {Key: "status", Value: "waiting"}, {Key: "createdAt", Value: ago(5)}},
		bson.D{{Key: "_id", Value: c2}, {Key: "visitorName", Value: "Val"}, {Key: "status", Value: "active"}, {Key: "agentId", Value: agentID}, {Key: "createdAt", Value: ago(20)}, {Key: "acceptedAt", Value: ago(19)}},
		bson.D{{Key: "_id", Value: c3}, {Key: "visitorName", Value: "Vin"}, {Key: "status", Value: "closed"}, {Key: "agentId", Value: agentID}, {Key: "createdAt", Value: ago(60)}, {Key: "acceptedAt", Value: ago(59)}, {Key: "closedAt", Value: ago(50)}},
		bson.D{{Key: "_id", Value: c4}, {Key: "visitorName", Value: "Old"}, {Key: "status", Value: "archived"}, {Key: "createdAt", Value: ago(90)}},
		bson.D{{Key: "_id", Value: c5}, {Key: "visitorName", Value: "Ugo"}, {Key: "status", Value: "active"}, {Key: "agentId", Value: carolID}, {Key: "createdAt", Value: ago(10)}},
	}); err != nil {
		t.Fatal(err)
	}
	msgIDs := map[string]bson.ObjectID{}
	msg := func(name string, chat any, sender, senderName, text string, at time.Time) any {
		id := bson.NewObjectID()
		msgIDs[name] = id
		d := bson.D{{Key: "_id", Value: id}, {Key: "sender", Value: sender}, {Key: "senderName", Value: senderName}, {Key: "text", Value: text}, {Key: "createdAt", Value: at}}
		if chat != nil {
			d = append(d, bson.E{Key: "chatId", Value: chat})
		}
		return d
	}
	if _, err := ldb.Collection("messages").InsertMany(ctx, []any{
		msg("c1-1", c1, "visitor", "Vic", "hello?", ago(5)),
		msg("c1-2", c1, "visitor", "Vic", "anyone?", ago(4)),
		msg("c2-2", c2, "agent", "Bob", "second", ago(18)), // out of createdAt order on purpose
		msg("c2-3", c2, "visitor", "Val", "third", ago(17)),
		msg("c2-1", c2.Hex(), "visitor", "Val", "first", ago(19)), // chatId as a string works too
		msg("c3-1", c3, "visitor", "Vin", "help", ago(58)),
		msg("c3-2", c3, "agent", "", "done", ago(55)),
		msg("c3-empty", c3, "visitor", "Vin", "  ", ago(54)),
		msg("c3-bot", c3, "bot", "Bot", "beep", ago(53)),
		msg("c4-1", c4, "visitor", "Old", "old", ago(90)),
		msg("orphan", nil, "visitor", "X", "lost", ago(3)),
		msg("c5-1", c5, "visitor", "Ugo", "hi", ago(9)),
	}); err != nil {
		t.Fatal(err)
	}

	tn := e.tenant("legacy-co", controlplane.StateLive)
	cellT := startCell(t, tn, "alice@legacy.test") // the new tenant's admin: replaced by the legacy admin
	uri := strings.TrimSuffix(mongoURI, "/") + "/" + dbName
	rep, err := e.svc.ImportLegacy(ctx, "legacy-co", "tester", transfer.LegacySource{URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	l := rep.Legacy
	if rep.Source != "legacy" || l == nil || l.Users != (transfer.LegacyCount{Read: 5, Imported: 2}) ||
		l.Chats != (transfer.LegacyCount{Read: 5, Imported: 4}) || l.Messages != (transfer.LegacyCount{Read: 12, Imported: 8}) ||
		l.SkippedTotal != 8 || !slices.Equal(rep.ReplacedUsers, []string{"alice@legacy.test"}) ||
		!strings.HasPrefix(l.Source, dbName+" on 127.0.0.1:") {
		t.Fatalf("report %+v legacy %+v", rep, l)
	}
	reasons := map[string]string{}
	for _, s := range l.Skipped {
		reasons[s.Collection+" "+s.ID] = s.Reason
	}
	for key, want := range map[string]string{
		"users " + carolID.Hex():               "not a bcrypt hash",
		"users " + daveID.Hex():                `role "owner"`,
		"users " + dupID.Hex():                 "also the email of user " + agentID.Hex(),
		"chats " + c4.Hex():                    `status "archived"`,
		"messages " + msgIDs["c4-1"].Hex():     "chat " + c4.Hex() + " was not imported",
		"messages " + msgIDs["c3-empty"].Hex(): "text is empty",
		"messages " + msgIDs["c3-bot"].Hex():   `sender "bot"`,
		"messages " + msgIDs["orphan"].Hex():   "chatId is missing",
	} {
		if !strings.Contains(reasons[key], want) {
			t.Errorf("skipped %s: %q, want %q", key, reasons[key], want)
		}
	}
	if len(l.Changed) != 1 || l.Changed[0].ID != c5.Hex() || !strings.Contains(l.Changed[0].Reason, "back in the queue") {
		t.Errorf("changed %+v", l.Changed)
	}

	// The documents.
	db := mongoc.Database(controlplane.DatabaseName(tn.ID))
	get := func(coll, id string, out any) {
		t.Helper()
		if err := db.Collection(coll).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", coll, id, err)
		}
	}
	var alice cell.User
	get("users", adminID.Hex(), &alice)
	if alice.Email != "alice@legacy.test" || !slices.Equal(alice.Roles, []string{"tenant-admin", "agent"}) || alice.PasswordHash != adminHash ||
		alice.TenantID != tn.ID || alice.Name != "Alice Admin" {
		t.Errorf("alice %+v", alice)
	}
	var active, waiting, closed, requeued cell.Chat
	get("chats", c2.Hex(), &active)
	get("chats", c1.Hex(), &waiting)
	get("chats", c3.Hex(), &closed)
	get("chats", c5.Hex(), &requeued)
	if active.Status != cell.ChatActive || active.AgentID != agentID.Hex() || active.AgentName != "Bob" || active.LastSeq != 3 ||
		active.OpenKey != "v-"+c2.Hex() || active.VisitorID != "v-"+c2.Hex() || active.Visitor.Name != "Val" || active.Visitor.TenantID != tn.ID ||
		active.SlotID != "slot:"+agentID.Hex()+":0" || active.Assignment != 1 || !active.AcceptedAt.Equal(ago(19)) ||
		active.FirstResponseAt == nil || !active.FirstResponseAt.Equal(ago(18)) || active.Preview != "third" || !active.LastActivityAt.Equal(ago(17)) ||
		len(active.History) != 2 || active.History[1].Type != cell.TransitionAccepted || active.TenantID != tn.ID {
		t.Errorf("active %+v", active)
	}
	if waiting.Status != cell.ChatQueued || waiting.LastSeq != 2 || waiting.OpenKey == "" || waiting.AgentID != "" || waiting.Visitor.Email != "vic@example.com" {
		t.Errorf("waiting %+v", waiting)
	}
	if closed.Status != cell.ChatResolved || closed.LastSeq != 2 || closed.OpenKey != "" || closed.ResolvedAt == nil || !closed.ResolvedAt.Equal(ago(50)) ||
		closed.AgentReadSeq != 2 || len(closed.History) != 3 || closed.History[2].To != cell.ChatResolved {
		t.Errorf("closed %+v", closed)
	}
	if requeued.Status != cell.ChatQueued || requeued.AgentID != "" || requeued.LastSeq != 1 || requeued.AcceptedAt != nil {
		t.Errorf("requeued %+v", requeued)
	}
	for i, want := range []struct{ name, body, role string }{{"c2-1", "first", "visitor"}, {"c2-2", "second", "agent"}, {"c2-3", "third", "visitor"}} {
		var m cell.Message
		get("messages", fmt.Sprintf("%s:%012d", c2.Hex(), i+1), &m)
		if m.Body != want.body || m.Seq != int64(i+1) || m.ClientMsgID != "legacy-"+msgIDs[want.name].Hex() || m.From.Role != want.role || m.TenantID != tn.ID {
			t.Errorf("message %d of the active chat: %+v", i+1, m)
		}
	}
	var claim struct {
		Holder string `bson:"holder"`
	}
	get("claims", "slot:"+agentID.Hex()+":0", &claim)
	if claim.Holder != c2.Hex() {
		t.Errorf("slot held by %q", claim.Holder)
	}
	get("claims", "assign:"+c3.Hex()+":1", &claim)
	if claim.Holder != agentID.Hex() {
		t.Errorf("assignment of the closed chat held by %q", claim.Holder)
	}
	// tenantId backfilled everywhere; the indexes are built.
	for _, c := range []string{"users", "chats", "messages", "visitors", "claims"} {
		n, _ := db.Collection(c).CountDocuments(ctx, bson.D{{Key: "tenantId", Value: bson.D{{Key: "$ne", Value: tn.ID}}}})
		if n != 0 {
			t.Errorf("%d %s without the tenant's id", n, c)
		}
	}
	specs, err := db.Collection("messages").Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(specs, func(s mongo.IndexSpecification) bool {
		return s.Name == "tenantId_1_chatId_1_seq_1" && s.Unique != nil && *s.Unique
	}) {
		t.Errorf("indexes %v", specs)
	}

	// The cell serves the migrated tenant.
	time.Sleep(2100 * time.Millisecond) // its user cache
	admin := cellT.login("alice@legacy.test", "legacy-admin-pw")
	bob := cellT.login("bob@legacy.test", "legacy-agent-pw")
	var hist service.History
	cellT.ok("GET", "/api/chats/"+c2.Hex()+"/messages", bob, nil, &hist)
	if len(hist.Messages) != 3 || hist.Messages[0].Body != "first" || hist.Messages[2].Body != "third" {
		t.Fatalf("history %+v", hist.Messages)
	}
	var next cell.Message
	cellT.ok("POST", "/api/messages", bob, map[string]string{"chatId": c2.Hex(), "body": "hello again", "clientMsgId": "b-1"}, &next)
	if next.Seq != 4 {
		t.Fatalf("next seq %d, want 4", next.Seq)
	}
	var queue struct {
		Chats []cell.Chat `json:"chats"`
	}
	cellT.ok("GET", "/api/chat/queue", admin, nil, &queue)
	if len(queue.Chats) != 2 {
		t.Fatalf("queue %+v", queue.Chats)
	}
	if ev := e.events(tn.ID); !strings.Contains(ev[len(ev)-1], "imported by super-admin tester from the single-tenant app's database "+dbName) ||
		strings.Contains(ev[len(ev)-1], "mongodb://") {
		t.Errorf("events %q", ev)
	}

	// Refusals: bad sources, and a tenant that now has chats of its own.
	for _, tc := range []struct {
		src        transfer.LegacySource
		code, want string
	}{
		{transfer.LegacySource{URI: "http://example.com/db"}, controlplane.EInvalid, "mongodb:// or mongodb+srv://"},
		{transfer.LegacySource{URI: mongoURI}, controlplane.EInvalid, "name the legacy database"},
		{transfer.LegacySource{URI: mongoURI, Database: "nothing_here"}, controlplane.EInvalid, "none of the collections"},
		{transfer.LegacySource{URI: "mongodb://u:s3cr3t@127.0.0.1:1/x?serverSelectionTimeoutMS=300"}, controlplane.EInvalid, "cannot read the legacy database x on 127.0.0.1:1"},
		{transfer.LegacySource{URI: uri}, controlplane.EConflict, "already has data"},
	} {
		_, err := e.svc.ImportLegacy(ctx, "legacy-co", "tester", tc.src)
		if controlplane.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%+v: %v, want %s %q", tc.src, err, tc.code, tc.want)
		}
	}
}
