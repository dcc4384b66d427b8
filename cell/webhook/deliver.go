package webhook

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Run delivers the outbox until ctx ends: it waits for the lease (one delivering Dispatcher per
// database), loads the outbox, and sends due attempts one at a time, oldest event first; when the
// lease is lost it goes back to waiting, and when ctx ends it releases the lease so another
// replica takes over at once. Events left pending by a crash or a restart are delivered by the
// next holder (at least once). Run must not be called twice at the same time on one Dispatcher (the
// second call returns at once).
func (d *Dispatcher) Run(ctx context.Context) {
	if !d.running.CompareAndSwap(false, true) {
		d.log.Error("webhook: Run is already running on this dispatcher")
		return
	}
	defer d.running.Store(false)
	for ctx.Err() == nil {
		l, activeAt, wait, err := d.acquire(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("webhook lease not acquired", logError, err)
		}
		if l != nil {
			d.hold(ctx, l, activeAt)
			wait = d.opts.LeaseTTL / 10
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// hold delivers while l is valid: a goroutine renews it, the caller's goroutine delivers.
func (d *Dispatcher) hold(ctx context.Context, l *lease, activeAt time.Time) {
	hctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		d.keepLease(hctx, l)
	}()
	if sleep(hctx, activeAt.Sub(d.now())) {
		d.deliverLoop(hctx, l)
	}
	cancel()
	<-done
	if ctx.Err() != nil && l.valid() {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.release(rctx, l)
		rcancel()
	}
}

// sleep waits for d or until ctx ends, reporting whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// deliverLoop runs the in-memory queue: loaded from an outbox scan, fed by local Publish calls
// and by a rescan every Options.Rescan, ordered by due time then Publish order.
func (d *Dispatcher) deliverLoop(ctx context.Context, l *lease) {
	d.mu.Lock()
	d.fresh = nil // the scan below sees every event published so far
	d.mu.Unlock()
	head, err := d.deliveryHead(ctx)
	if err != nil {
		d.log.Warn("webhook delivery log head not read", logError, err)
		return
	}
	d.logSeq = head
	q := &queue{byID: map[string]*queued{}}
	if err := d.load(ctx, q); err != nil {
		d.log.Warn("webhook outbox not loaded", logError, err)
		return
	}
	rescanAt := time.Now().Add(d.opts.Rescan)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for ctx.Err() == nil && l.valid() {
		d.takeFresh(q)
		if !time.Now().Before(rescanAt) {
			if err := d.load(ctx, q); err != nil && ctx.Err() == nil {
				d.log.Warn("webhook outbox not rescanned", logError, err)
			}
			rescanAt = time.Now().Add(d.opts.Rescan)
		}
		if len(q.items) > 0 && !d.now().Before(q.items[0].due) {
			if !l.validFor(d.opts.Timeout) { // a renewal is late: wait for it (or for the loss)
				sleep(ctx, d.opts.LeaseTTL/20)
				continue
			}
			it := heap.Pop(q).(*queued)
			if next, keep := d.process(ctx, l, it.id); keep {
				q.add(queued{id: it.id, order: it.order, due: next})
			}
			continue
		}
		wait := time.Until(rescanAt)
		if len(q.items) > 0 {
			wait = min(wait, q.items[0].due.Sub(d.now()))
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
		case <-d.kick:
		case <-timer.C:
		}
	}
}

// load adds every outbox document not yet queued, due at its earliest unfinished retry, or at
// once (zero time, so never-attempted events go in Publish order) when it has none.
func (d *Dispatcher) load(ctx context.Context, q *queue) error {
	cur, err := d.outbox.Find(ctx, bson.D{{Key: "tenantId", Value: d.tenantID}},
		options.Find().SetProjection(bson.D{{Key: "body", Value: 0}}))
	if err != nil {
		return err
	}
	var docs []outboxDoc
	if err := cur.All(ctx, &docs); err != nil {
		return err
	}
	for _, doc := range docs {
		due := time.Time{}
		for _, t := range doc.Targets {
			if t.Done == "" && (due.IsZero() || t.NextAt.Before(due)) {
				due = t.NextAt
			}
		}
		q.add(queued{id: doc.ID, order: doc.Order, due: due})
	}
	return nil
}

// takeFresh queues the events published through this Dispatcher since the last call.
func (d *Dispatcher) takeFresh(q *queue) {
	d.mu.Lock()
	fresh := d.fresh
	d.fresh = nil
	d.mu.Unlock()
	for _, f := range fresh {
		q.add(f)
	}
}

// endpointKey identifies an endpoint in an event's delivery state: its URL's SHA-256, shortened.
func endpointKey(u string) string {
	sum := sha256.Sum256([]byte(u))
	return hex.EncodeToString(sum[:8])
}

// process makes the due attempts of event id and reports when it is next due, or keep=false
// when it is finished (or gone).
func (d *Dispatcher) process(ctx context.Context, l *lease, id string) (next time.Time, keep bool) {
	later := d.now().Add(min(d.opts.BackoffBase, 30*time.Second))
	var doc outboxDoc
	if err := d.get(ctx, d.outbox, id, &doc); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return time.Time{}, false
		}
		if ctx.Err() == nil {
			d.log.Warn("webhook outbox read failed", logEventID, id, logError, err)
		}
		return later, true
	}
	eps, err := d.endpoints(ctx)
	if err != nil {
		d.log.Warn("webhook endpoints not read", logEventID, id, logError, err)
		return later, true
	}
	// What an attempt did is recorded even when ctx ends right after it (a delivered event must
	// not be sent again by the next holder); the lease is released only after process returns.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var wanted []Endpoint
	seen := map[string]bool{}
	for _, ep := range eps {
		if k := endpointKey(ep.URL); ep.Wants(doc.Type) && !seen[k] {
			seen[k] = true
			wanted = append(wanted, ep)
		}
	}
	for _, ep := range wanted {
		i := doc.targetIndex(endpointKey(ep.URL))
		if t := doc.Targets[i]; t.Done != "" || d.now().Before(t.NextAt) {
			continue
		}
		if ctx.Err() != nil || !l.validFor(d.opts.Timeout) {
			return d.now(), true
		}
		del, ok := d.attempt(ctx, ep, &doc, doc.Targets[i].Attempts+1)
		if !ok && ctx.Err() != nil { // stopped mid-attempt: it does not count
			return d.now(), true
		}
		t := &doc.Targets[i]
		t.Attempts = del.Attempt
		switch {
		case ok:
			t.Done, del.Outcome = OutcomeDelivered, OutcomeDelivered
		case t.Attempts >= d.opts.MaxAttempts:
			t.Done, del.Outcome = OutcomeFailed, OutcomeFailed
		default:
			t.NextAt = d.now().Add(Backoff(t.Attempts, d.opts.BackoffBase, d.opts.BackoffMax, d.jitter()))
			del.Outcome = OutcomeRetrying
			nextAt := t.NextAt
			del.NextAttemptAt = &nextAt
		}
		d.record(wctx, del)
		if _, err := d.setByID(wctx, d.outbox, doc.ID, bson.D{{Key: "$set", Value: bson.D{
			{Key: "targets", Value: doc.Targets}}}}); err != nil {
			d.log.Warn("webhook attempt state not saved", logEventID, id, logError, err)
		}
	}
	status := StatusDelivered
	if len(wanted) == 0 {
		status = StatusDropped
	}
	for _, ep := range wanted {
		t := doc.Targets[doc.targetIndex(endpointKey(ep.URL))]
		switch t.Done {
		case "":
			if next.IsZero() || t.NextAt.Before(next) {
				next = t.NextAt
			}
		case OutcomeFailed:
			status = StatusFailed
		}
	}
	if !next.IsZero() {
		return next, true
	}
	if err := d.finish(wctx, &doc, status); err != nil {
		if ctx.Err() == nil {
			d.log.Warn("webhook event not finished", logEventID, id, logError, err)
		}
		return later, true
	}
	return time.Time{}, false
}

// targetIndex returns the index of the target with key, appending a fresh one (due now) if
// missing.
func (doc *outboxDoc) targetIndex(key string) int {
	for i, t := range doc.Targets {
		if t.Key == key {
			return i
		}
	}
	doc.Targets = append(doc.Targets, target{Key: key})
	return len(doc.Targets) - 1
}

// finish records the event's final status and removes it from the outbox.
func (d *Dispatcher) finish(ctx context.Context, doc *outboxDoc, status Status) error {
	now := d.now()
	set := bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: status}, {Key: "finishedAt", Value: now}}}}
	ok, err := d.setByID(ctx, d.events, doc.ID, set)
	if err != nil {
		return err
	}
	if !ok { // the publisher stopped between its two inserts: write the record it did not
		_, err = d.events.InsertOne(ctx, eventDoc{ID: doc.ID, TenantID: d.tenantID, Type: doc.Type,
			OccurredAt: doc.OccurredAt, CreatedAt: doc.CreatedAt, Status: status, FinishedAt: &now, Body: doc.Body})
		if err != nil && isDuplicate(err) {
			_, err = d.setByID(ctx, d.events, doc.ID, set)
		}
		if err != nil {
			return err
		}
	}
	_, err = d.outbox.DeleteOne(ctx, bson.D{{Key: "_id", Value: doc.ID}})
	return err
}

// attempt POSTs the event to ep once and reports the attempt (Outcome unset) and whether it was
// delivered.
func (d *Dispatcher) attempt(ctx context.Context, ep Endpoint, doc *outboxDoc, n int) (Delivery, bool) {
	start := d.now()
	del := Delivery{EventID: doc.ID, Type: doc.Type, URL: redactURL(ep.URL), Attempt: n, At: start}
	if err := ep.check(); err != nil {
		del.Error = err.Error()
		return del, false
	}
	ts := strconv.FormatInt(start.Unix(), 10)
	actx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, strings.NewReader(doc.Body))
	if err != nil {
		del.Error = "invalid endpoint: " + err.Error()
		return del, false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Atende-Webhooks/1")
	req.Header.Set(HeaderEventID, doc.ID)
	req.Header.Set(HeaderEvent, string(doc.Type))
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(ep.Secret, ts, []byte(doc.Body)))
	req.Header.Set(HeaderAttempt, strconv.Itoa(n))
	t0 := time.Now()
	resp, err := d.client.Do(req)
	if err != nil {
		del.DurationMS = time.Since(t0).Milliseconds()
		del.Error = d.describe(err)
		return del, false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	del.DurationMS = time.Since(t0).Milliseconds()
	del.StatusCode = resp.StatusCode
	return del, is2xx(resp.StatusCode)
}

// describe turns a client error into a short message without the URL (which may hold a
// password).
func (d *Dispatcher) describe(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("timeout after %s", d.opts.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, ErrBlockedAddress) {
		return "blocked: " + err.Error()
	}
	return err.Error()
}

// record appends del to the delivery log under the next seq, moves the head hint and drops the
// entry that falls out of the kept window. Only the lease holder writes, so a duplicate seq means
// a former holder's late write: skip past it.
func (d *Dispatcher) record(ctx context.Context, del Delivery) {
	for range 50 {
		seq := d.logSeq + 1
		del.Seq = seq
		_, err := d.deliveries.InsertOne(ctx, deliveryDoc{ID: deliveryID(seq), TenantID: d.tenantID, Delivery: del})
		if err != nil && isDuplicate(err) {
			d.logSeq = seq
			continue
		}
		if err != nil {
			d.log.Warn("webhook delivery not logged", logEventID, del.EventID, logError, err)
			return
		}
		d.logSeq = seq
		if err := d.upsertByID(ctx, d.state, deliveriesHeadID, bson.D{{Key: "seq", Value: seq}}); err != nil {
			d.log.Warn("webhook delivery head not recorded", logError, err)
		}
		if old := seq - d.opts.KeepDeliveries; old > 0 {
			if _, err := d.deliveries.DeleteOne(ctx, bson.D{{Key: "_id", Value: deliveryID(old)}}); err != nil {
				d.log.Warn("webhook old delivery not pruned", logError, err)
			}
		}
		return
	}
}

// queued is an event in the deliverer's in-memory queue.
type queued struct {
	id    string
	order int64
	due   time.Time
	index int
}

// queue is a min-heap of queued events by (due, order), with an index by id.
type queue struct {
	items []*queued
	byID  map[string]*queued
}

// add queues q unless its id is queued already.
func (q *queue) add(it queued) {
	if _, ok := q.byID[it.id]; ok {
		return
	}
	p := &it
	q.byID[it.id] = p
	heap.Push(q, p)
}

// Len implements heap.Interface.
func (q *queue) Len() int { return len(q.items) }

// Less implements heap.Interface: earlier due first, then older Publish.
func (q *queue) Less(i, j int) bool {
	a, b := q.items[i], q.items[j]
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	return a.order < b.order
}

// Swap implements heap.Interface.
func (q *queue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.items[i].index, q.items[j].index = i, j
}

// Push implements heap.Interface; use add.
func (q *queue) Push(x any) {
	it := x.(*queued)
	it.index = len(q.items)
	q.items = append(q.items, it)
}

// Pop implements heap.Interface: it removes the item from the id index too.
func (q *queue) Pop() any {
	n := len(q.items)
	it := q.items[n-1]
	q.items[n-1] = nil
	q.items = q.items[:n-1]
	delete(q.byID, it.id)
	return it
}
