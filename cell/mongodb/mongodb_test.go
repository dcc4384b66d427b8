package mongodb_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/mongodb"
	"atende/controlplane/ferret"
)

// TestEnsureIndexesTwice holds the restart case: a cell started on an existing database must
// find its indexes in place (FerretDB v1 used to drop the connection on a multi-index call).
func TestEnsureIndexesTwice(t *testing.T) {
	dir, err := os.MkdirTemp("", "atende-mongodb-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := ferret.Start(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		store, err := mongodb.Open(ctx, srv.URI(), "t_restart", "restart")
		if err != nil {
			t.Fatal(err)
		}
		if err := store.EnsureIndexes(ctx); err != nil {
			t.Fatalf("start %d: %v", i+1, err)
		}
		store.Close(ctx)
	}
}

// TestBatchedInsertsKeepEachOutcome sends 400 concurrent message inserts into 4 chats, a quarter
// of them duplicates of a seq or a clientMsgId already taken, so batches mix fresh and refused
// documents: every fresh one must be stored and answered nil, every duplicate answered conflict
// and not stored, and a store closed mid-way must not hang its callers.
func TestBatchedInsertsKeepEachOutcome(t *testing.T) {
	dir := t.TempDir()
	srv, err := ferret.Start(dir, "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	store, err := mongodb.Open(ctx, srv.URI(), "t_batch", "batch")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(ctx)
	if err := store.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	msg := func(chat string, seq int64, client string) *cell.Message {
		return &cell.Message{ChatID: chat, Seq: seq, ClientMsgID: client, Body: "b", CreatedAt: time.Now().UTC(),
			From: cell.Author{Role: cell.RoleVisitor, ID: "v"}}
	}
	// Seqs 1..50 of each chat exist first; the race then adds 51..125 and retries 25 taken ones.
	for c := 0; c < 4; c++ {
		for seq := int64(1); seq <= 50; seq++ {
			if err := store.InsertMessage(ctx, msg(fmt.Sprint("chat-", c), seq, fmt.Sprint("c-", seq))); err != nil {
				t.Fatal(err)
			}
		}
	}
	type outcome struct {
		fresh bool
		err   error
	}
	results := make([]outcome, 400)
	var wg sync.WaitGroup
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chat := fmt.Sprint("chat-", i%4)
			k := int64(i / 4) // 0..99
			switch {
			case k < 75: // fresh
				results[i] = outcome{true, store.InsertMessage(ctx, msg(chat, 51+k, fmt.Sprint("c-", 51+k)))}
			case k < 88: // a taken seq with a new clientMsgId
				results[i] = outcome{false, store.InsertMessage(ctx, msg(chat, k-74, fmt.Sprint("new-", k)))}
			default: // a new seq with a taken clientMsgId
				results[i] = outcome{false, store.InsertMessage(ctx, msg(chat, 500+k, fmt.Sprint("c-", k-87)))}
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.fresh && r.err != nil {
			t.Fatalf("insert %d: %v, want stored", i, r.err)
		}
		if !r.fresh && cell.ErrorCode(r.err) != cell.EConflict {
			t.Fatalf("duplicate insert %d: %v, want conflict", i, r.err)
		}
	}
	for c := 0; c < 4; c++ {
		chat := fmt.Sprint("chat-", c)
		got, err := store.MessagesInRange(ctx, chat, 0, 1000, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 125 {
			t.Fatalf("%s holds %d messages, want 125 (seq 1..125, no duplicate stored)", chat, len(got))
		}
		for i, m := range got {
			if m.Seq != int64(i+1) || m.ClientMsgID != fmt.Sprint("c-", i+1) {
				t.Fatalf("%s message %d: seq %d clientMsgId %s", chat, i, m.Seq, m.ClientMsgID)
			}
		}
		if ok, _ := store.HasMessageSeq(ctx, chat, 590, false); ok {
			t.Fatalf("%s: a refused duplicate clientMsgId was stored at seq 590", chat)
		}
	}
	// Closing the store answers waiting and later callers instead of hanging them.
	store.Close(ctx)
	done := make(chan error, 1)
	go func() { done <- store.InsertMessage(ctx, msg("chat-0", 999, "late")) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("insert after Close succeeded")
		}
	case <-time.After(15 * time.Second):
		t.Fatal("insert after Close hung")
	}
}
