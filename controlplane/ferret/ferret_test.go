package ferret

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestDataSurvivesRestart: the SQLite files under the data dir keep what was written.
func TestDataSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i, want := range []int{0, 1} {
		srv, err := Start(dir, "127.0.0.1:0", nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
		if err != nil {
			t.Fatal(err)
		}
		col := c.Database("t_restart").Collection("docs")
		if n, err := col.CountDocuments(ctx, bson.D{}); err != nil || int(n) != want {
			t.Fatalf("start %d: %d documents (err %v), want %d", i+1, n, err, want)
		}
		if _, err := col.InsertOne(ctx, bson.D{{Key: "_id", Value: "x"}}); i == 0 && err != nil {
			t.Fatal(err)
		}
		c.Disconnect(ctx)
		srv.Close()
	}
}

// TestIDIndexMakesPointReadsSearch: the indexer gives every collection the index FerretDB's
// pushed-down `_id` filter can use (SQLite's plan turns from SCAN into SEARCH … USING INDEX),
// also for a collection or database dropped and created again, and nothing FerretDB does by
// `_id` changes (reads, updates, duplicate refusals, deletes).
func TestIDIndexMakesPointReadsSearch(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	srv, err := Start(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(ctx)
	db := c.Database("t_idx")
	fill := func(coll string, n int) {
		docs := make([]any, n)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("m:%05d", i)}, {Key: "n", Value: i}}
		}
		if _, err := db.Collection(coll).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(coll string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			detail := explainIDRead(t, filepath.Join(dir, "t_idx.sqlite"), coll)
			if strings.Contains(detail, "__atende_id") || time.Now().After(deadline) {
				return detail
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fill("messages", 2000)
	if p := plan("messages"); !strings.Contains(p, "SEARCH") || !strings.Contains(p, "__atende_id") {
		t.Fatalf("query plan of a point read: %q, want a SEARCH using the __atende_id index", p)
	}
	col := db.Collection("messages")
	var got bson.M
	if err := col.FindOne(ctx, bson.D{{Key: "_id", Value: "m:00042"}}).Decode(&got); err != nil || got["n"] != int32(42) {
		t.Fatalf("find by _id: %v %v", got, err)
	}
	if _, err := col.InsertOne(ctx, bson.D{{Key: "_id", Value: "m:00042"}}); !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("duplicate _id insert: %v, want a duplicate key error", err)
	}
	if r, err := col.UpdateOne(ctx, bson.D{{Key: "_id", Value: "m:00042"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: -1}}}}); err != nil || r.ModifiedCount != 1 {
		t.Fatalf("update by _id: %+v %v", r, err)
	}
	if r, err := col.DeleteOne(ctx, bson.D{{Key: "_id", Value: "m:00043"}}); err != nil || r.DeletedCount != 1 {
		t.Fatalf("delete by _id: %+v %v", r, err)
	}
	if n, _ := col.CountDocuments(ctx, bson.D{}); n != 1999 {
		t.Fatalf("%d documents, want 1999", n)
	}
	// A collection dropped and created again, then the whole database.
	if err := col.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	fill("messages", 10)
	if p := plan("messages"); !strings.Contains(p, "__atende_id") {
		t.Fatalf("after the collection was recreated: plan %q", p)
	}
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	fill("messages", 10)
	if p := plan("messages"); !strings.Contains(p, "__atende_id") {
		t.Fatalf("after the database was recreated: plan %q", p)
	}
	if n, _ := db.Collection("messages").CountDocuments(ctx, bson.D{}); n != 10 {
		t.Fatalf("%d documents after recreation, want 10", n)
	}
}

// explainIDRead returns SQLite's query plan for FerretDB's pushed-down read by _id of collection
// coll in the database file path (a fresh connection each time, so the schema is current).
func explainIDRead(t *testing.T, path, coll string) string {
	t.Helper()
	sq, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer sq.Close()
	var table string
	if err := sq.QueryRow(`SELECT table_name FROM _ferretdb_collections WHERE name = ?`, coll).Scan(&table); err != nil {
		t.Fatal(err)
	}
	rows, err := sq.Query(fmt.Sprintf(`EXPLAIN QUERY PLAN SELECT _ferretdb_sjson FROM %q WHERE _ferretdb_sjson->'$._id' = ?`, table), `"m:00042"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var detail string
	for rows.Next() {
		var id, parent, notused int
		var d string
		if err := rows.Scan(&id, &parent, &notused, &d); err != nil {
			t.Fatal(err)
		}
		detail += d
	}
	return detail
}
