package ferret

import (
	"context"
	"testing"

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
