package mongodb

import (
	"context"
	"errors"
	"sync"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Group commit of message inserts.
//
// Every message is its own insert, and the database commits each insert on its own: measured on
// the embedded FerretDB, about 1,000 single inserts/s against 6,500/s in InsertMany batches
// (BenchmarkHistoryPage). The batcher turns inserts that arrive while another batch is being
// written into one unordered InsertMany. Each caller still returns only when the batch holding
// its document has been committed (FerretDB writes a batch in one SQLite transaction), so
// "persisted before ack" is untouched; a document refused by a unique index (a duplicate seq or
// clientMsgId) gets its own duplicate-key error, exactly as its own InsertOne would.
//
// There is no timer: a batch is whatever queued while the previous one was written, so an idle
// cell writes each message at once and a busy one writes fewer, larger batches.

// MaxInsertBatch bounds the documents of one batch (256).
const MaxInsertBatch = 256

// insertWorkers is how many batches may be in flight at once (2): while one is being committed
// the next fills, and the driver's encoding of one overlaps the database's work on the other.
const insertWorkers = 2

// batcher groups inserts into one collection.
type batcher struct {
	coll *mongo.Collection
	what string
	reqs chan *insertReq
	once sync.Once
	stop chan struct{}
}

// insertReq is one document waiting to be written and the channel its outcome goes to.
type insertReq struct {
	doc  any
	done chan error
}

// newBatcher returns the batcher of coll; what names its documents in errors.
func newBatcher(coll *mongo.Collection, what string, stop chan struct{}) *batcher {
	return &batcher{coll: coll, what: what, reqs: make(chan *insertReq, MaxInsertBatch), stop: stop}
}

// insert writes doc in the next batch and returns its own outcome, translated like a single
// insert's (conflict for a duplicate key). If ctx ends first, ctx's error is returned and the
// outcome is unknown: the document may still be written (as with a single insert whose answer
// is lost).
func (b *batcher) insert(ctx context.Context, doc any) error {
	b.once.Do(func() {
		for range insertWorkers {
			go b.run()
		}
	})
	select {
	case <-b.stop:
		return errClosed
	default:
	}
	r := &insertReq{doc: doc, done: make(chan error, 1)}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop:
		return errClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.stop: // the workers are gone; a batch already taken may still have been written
		return errClosed
	}
}

// errClosed answers inserts into a closed store.
var errClosed = errors.New("mongodb: store closed")

// run writes batches until the store is closed.
func (b *batcher) run() {
	for {
		var first *insertReq
		select {
		case first = <-b.reqs:
		case <-b.stop:
			return
		}
		batch := []*insertReq{first}
	fill:
		for len(batch) < MaxInsertBatch {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.write(batch)
	}
}

// write inserts one batch and hands every request its outcome. The client's operation timeout
// (DefaultTimeout or the URI's timeoutMS) bounds the write.
func (b *batcher) write(batch []*insertReq) {
	if len(batch) == 1 {
		_, err := b.coll.InsertOne(context.Background(), batch[0].doc)
		batch[0].done <- translate(err, b.what)
		return
	}
	docs := make([]any, len(batch))
	for i, r := range batch {
		docs[i] = r.doc
	}
	_, err := b.coll.InsertMany(context.Background(), docs, options.InsertMany().SetOrdered(false))
	var bwe mongo.BulkWriteException
	if err != nil && errors.As(err, &bwe) && bwe.WriteConcernError == nil && len(bwe.WriteErrors) > 0 {
		failed := make(map[int]error, len(bwe.WriteErrors))
		for _, we := range bwe.WriteErrors {
			failed[we.Index] = translate(we, b.what)
		}
		for i, r := range batch {
			r.done <- failed[i] // nil: written
		}
		return
	}
	for _, r := range batch {
		r.done <- translate(err, b.what)
	}
}
