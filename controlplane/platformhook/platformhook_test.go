package platformhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"atende/controlplane"
	"atende/controlplane/ferret"
	"atende/controlplane/mongodb"
	"atende/controlplane/platformhook"
	"atende/controlplane/process"
	"atende/controlplane/process/processtest"
	"atende/controlplane/supervisor"
)

// fakeBin is the process driver's fake cell, compiled by TestMain.
var fakeBin string

func TestMain(m *testing.M) {
	bin, cleanup, err := processtest.BuildFakeCell()
	if err != nil {
		panic(err)
	}
	fakeBin = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

const secret = "platform-secret-for-tests"

// received is one request the receiver got.
type received struct {
	id, typ   string
	attempt   int
	status    int // what the receiver answered (0: the sender gave up before the answer)
	body      platformhook.Body
	signature bool // the signature verified (computed here, independently of the sender's code)
}

// receiver is a real HTTP platform endpoint that verifies every request on its own, records it,
// and answers what answer decides (200 by default).
type receiver struct {
	mu     sync.Mutex
	got    []received
	answer func(r received, seen int) int // seen: earlier requests with the same id
	srv    *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		ts := r.Header.Get("X-Atende-Timestamp")
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(ts + "." + string(raw)))
		want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
		sec, _ := strconv.ParseInt(ts, 10, 64)
		fresh := time.Since(time.Unix(sec, 0)).Abs() < time.Minute
		var b platformhook.Body
		_ = json.Unmarshal(raw, &b)
		attempt, _ := strconv.Atoi(r.Header.Get("X-Atende-Attempt"))
		got := received{id: r.Header.Get("X-Atende-Event-Id"), typ: r.Header.Get("X-Atende-Event"), attempt: attempt, body: b,
			signature: r.Method == http.MethodPost && fresh && hmac.Equal([]byte(r.Header.Get("X-Atende-Signature")), []byte(want))}
		rc.mu.Lock()
		seen := 0
		for _, g := range rc.got {
			if g.id == got.id {
				seen++
			}
		}
		answer := rc.answer
		rc.mu.Unlock()
		status := http.StatusOK
		if answer != nil {
			status = answer(got, seen)
		}
		got.status = status
		rc.mu.Lock()
		rc.got = append(rc.got, got)
		rc.mu.Unlock()
		if status != 0 {
			w.WriteHeader(status)
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// runDeliverer starts a deliverer on store and returns its stop function.
func runDeliverer(t *testing.T, store *mongodb.Store, url, owner string) (stop func()) {
	t.Helper()
	d, err := platformhook.New(platformhook.Options{URL: url, Secret: secret, Store: store, Owner: owner,
		Timeout: 2 * time.Second, Poll: 30 * time.Millisecond, BackoffBase: 150 * time.Millisecond, BackoffMax: 400 * time.Millisecond,
		LeaseTTL: 6 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func openStore(t *testing.T, uri string) *mongodb.Store {
	t.Helper()
	s, err := mongodb.Open(context.Background(), uri, "registry_test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLifecycleEventsReachThePlatformInOrder drives a tenant through create, suspend, resume
// and delete with a real supervisor on the embedded FerretDB registry, and checks what a real
// HTTP receiver gets: every event of the registry, once, in order, signed; a failed first
// attempt retried with the same id; and a deliverer restarted in the middle (a new process on
// the same registry) delivering the rest, repeating only the one event whose answer it never saw.
func TestLifecycleEventsReachThePlatformInOrder(t *testing.T) {
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store := openStore(t, srv.URI())
	driver, err := process.New(process.Options{Binary: fakeBin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := supervisor.New(supervisor.Options{Store: store, Driver: driver,
		Platform: supervisor.Platform{Domain: "localhost", PublicPort: 8080}, Tick: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	supCtx, stopSup := context.WithCancel(context.Background())
	supDone := make(chan struct{})
	go func() { defer close(supDone); _ = sup.Run(supCtx) }()
	t.Cleanup(func() { stopSup(); <-supDone; driver.StopAll(context.Background()) })

	rc := newReceiver(t)
	var stopFirst func()
	var unackedMu sync.Mutex
	var unacked string // the event whose delivery the first deliverer never saw answered
	getUnacked := func() string { unackedMu.Lock(); defer unackedMu.Unlock(); return unacked }
	rc.answer = func(r received, seen int) int {
		switch {
		case r.typ == "tenant.suspended" && seen == 0:
			return http.StatusServiceUnavailable // the first attempt fails: a retry must follow
		case r.typ == "tenant.resume-requested" && seen == 0:
			// The receiver has the event, but the control plane stops before it sees the answer.
			unackedMu.Lock()
			unacked = r.id
			unackedMu.Unlock()
			go stopFirst()
			time.Sleep(300 * time.Millisecond)
			return http.StatusOK
		}
		return http.StatusOK
	}
	stopFirst = runDeliverer(t, store, rc.srv.URL+"/hooks", "first")

	ctx := context.Background()
	wait := func(state controlplane.State) {
		t.Helper()
		waitFor(t, "acme "+string(state), 15*time.Second, func() bool {
			tn, err := sup.Tenant(ctx, "acme")
			return err == nil && tn.State == state
		})
	}
	created, err := sup.CreateTenant(ctx, controlplane.NewTenant{Key: "acme", Name: "Acme", Admin: controlplane.NewUser{Email: "admin@acme.test"}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Tenant.ID
	wait(controlplane.StateLive)
	if _, err := sup.SuspendTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	wait(controlplane.StateSuspended)
	waitFor(t, "the suspension delivered after its retry", 10*time.Second, func() bool {
		n := 0
		for _, r := range rc.requests() {
			if r.typ == "tenant.suspended" {
				n++
			}
		}
		return n == 2
	})
	if _, err := sup.ResumeTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	wait(controlplane.StateLive)
	waitFor(t, "the first deliverer stopped mid-delivery", 10*time.Second, func() bool { return getUnacked() != "" })
	stopFirst()

	// Meanwhile the tenant is deleted; a new deliverer (another process: its own connection and
	// owner) takes over the registry.
	if _, err := sup.DeleteTenant(ctx, "acme", true); err != nil {
		t.Fatal(err)
	}
	wait(controlplane.StateDeleted)
	runDeliverer(t, openStore(t, srv.URI()), rc.srv.URL+"/hooks", "second")

	events, err := store.Events(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every event delivered", 15*time.Second, func() bool {
		ok := 0
		for _, r := range rc.requests() {
			if r.status == http.StatusOK && r.id == mongodb.EventID(id, events[len(events)-1].Seq) {
				ok++
			}
		}
		return ok > 0
	})
	time.Sleep(200 * time.Millisecond) // nothing more may come

	got := rc.requests()
	var ids, types []string
	for i, r := range got {
		if !r.signature {
			t.Errorf("request %d (%s): signature or timestamp does not verify", i, r.id)
		}
		if r.body.ID != r.id || r.body.Type != r.typ || r.body.TenantID != id || r.body.TenantKey != "acme" {
			t.Errorf("request %d: headers %s/%s, body %+v", i, r.id, r.typ, r.body)
		}
		if len(ids) > 0 && ids[len(ids)-1] == r.id {
			continue // a retry or the repeat of the unacknowledged one: checked below
		}
		ids = append(ids, r.id)
		types = append(types, r.typ)
	}
	var want, wantTypes []string
	for _, ev := range events {
		want = append(want, mongodb.EventID(id, ev.Seq))
		wantTypes = append(wantTypes, platformhook.TypeOf(ev))
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("delivered in order %v\nwant the registry's events %v", ids, want)
	}
	t.Logf("types delivered: %v", types)
	if !slices.Equal(types, wantTypes) {
		t.Fatalf("types %v, want %v", types, wantTypes)
	}
	for _, st := range []string{"tenant.registered", "tenant.creating", "tenant.live", "tenant.suspend-requested", "tenant.suspended",
		"tenant.resume-requested", "tenant.deletion-pending", "tenant.deleting", "tenant.updated", "tenant.deleted"} {
		if !slices.Contains(types, st) {
			t.Errorf("no %s event delivered", st)
		}
	}
	// Repeats: the failed suspension (attempts 1 then 2, same id and body) and the one event the
	// first deliverer never saw answered (delivered again by the second); nothing else.
	count := map[string][]received{}
	for _, r := range got {
		count[r.id] = append(count[r.id], r)
	}
	for evID, rs := range count {
		switch {
		case len(rs) == 1:
		case rs[0].typ == "tenant.suspended":
			if len(rs) != 2 || rs[0].status != 503 || rs[0].attempt != 1 || rs[1].attempt != 2 || rs[1].status != 200 || rs[0].body != rs[1].body {
				t.Errorf("suspension attempts: %+v", rs)
			}
		case evID == getUnacked():
			if len(rs) != 2 {
				t.Errorf("unacknowledged event delivered %d times, want 2", len(rs))
			}
		default:
			t.Errorf("event %s (%s) delivered %d times", evID, rs[0].typ, len(rs))
		}
	}

	// The delivery log shows the retry, and nothing is pending.
	log, err := platformhook.Log{Store: store, URL: "http://user:pw@example.test/x"}.WebhookLog(ctx, controlplane.DeliveryFilter{TenantID: id})
	if err != nil {
		t.Fatal(err)
	}
	if log.URL != "http://example.test/x" || len(log.Pending) != 0 {
		t.Errorf("log url %q pending %+v", log.URL, log.Pending)
	}
	var suspended []controlplane.LifecycleDelivery
	for _, d := range log.Deliveries {
		if d.Type == "tenant.suspended" {
			suspended = append(suspended, d)
		}
	}
	if len(suspended) != 2 || suspended[1].Outcome != controlplane.DeliveryRetrying || suspended[1].StatusCode != 503 ||
		suspended[1].NextAttemptAt == nil || suspended[0].Outcome != controlplane.DeliveryDelivered || suspended[0].Attempt != 2 {
		t.Errorf("suspension in the log (newest first): %+v", suspended)
	}
	if _, err := (platformhook.Log{Store: store}).WebhookLog(ctx, controlplane.DeliveryFilter{Limit: controlplane.MaxDeliveriesPage + 1}); controlplane.ErrorCode(err) != controlplane.EInvalid {
		t.Errorf("limit too large: %v, want invalid", err)
	}
}

// TestAttemptsAreBoundedAndRedirectsNotFollowed: a receiver answering with a redirect gets
// MaxAttempts attempts (the redirect target none), the event is logged failed, and the tenant's
// next event is delivered after it.
func TestAttemptsAreBoundedAndRedirectsNotFollowed(t *testing.T) {
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store := openStore(t, srv.URI())
	target := newReceiver(t)
	rc := newReceiver(t)
	rc.srv.Config.Handler = func(inner http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Atende-Event") == platformhook.TypeRegistered {
				http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
				return
			}
			inner.ServeHTTP(w, r)
		})
	}(rc.srv.Config.Handler)

	ctx := context.Background()
	now := time.Now().UTC()
	tn := &controlplane.Tenant{ID: controlplane.NewTenantID(), Key: "globex", Name: "Globex", State: controlplane.StateCreationRequested,
		CreatedAt: now, UpdatedAt: now}
	if err := store.CreateTenant(ctx, tn, controlplane.Event{TenantID: tn.ID, To: tn.State, At: now, Reason: "requested by super-admin"}); err != nil {
		t.Fatal(err)
	}
	ev, err := tn.Transition(controlplane.StateCreating, "starting cell", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.SaveTenant(ctx, tn, ev); err != nil {
		t.Fatal(err)
	}
	d, err := platformhook.New(platformhook.Options{URL: rc.srv.URL, Secret: secret, Store: store, MaxAttempts: 3,
		Timeout: time.Second, Poll: 20 * time.Millisecond, BackoffBase: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the next event delivered", 10*time.Second, func() bool { return len(rc.requests()) == 1 })

	if n := len(target.requests()); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
	if r := rc.requests()[0]; r.typ != "tenant.creating" || r.id != mongodb.EventID(tn.ID, 2) || !r.signature {
		t.Fatalf("after the failed event: %+v", r)
	}
	var log *controlplane.WebhookLog
	waitFor(t, "the delivery recorded", 10*time.Second, func() bool { // recorded after the receiver answers
		log, err = platformhook.Log{Store: store}.WebhookLog(ctx, controlplane.DeliveryFilter{})
		return err == nil && len(log.Deliveries) == 4
	})
	var outcomes []string
	for _, del := range slices.Backward(log.Deliveries) {
		outcomes = append(outcomes, del.Type+"#"+strconv.Itoa(del.Attempt)+":"+del.Outcome+":"+strconv.Itoa(del.StatusCode))
	}
	want := []string{"tenant.registered#1:retrying:307", "tenant.registered#2:retrying:307", "tenant.registered#3:failed:307", "tenant.creating#1:delivered:200"}
	if !slices.Equal(outcomes, want) {
		t.Fatalf("log %v, want %v", outcomes, want)
	}
	if log.Enabled || log.Deliveries[1].Error != "redirects are not followed" {
		t.Fatalf("log enabled %v, error %q", log.Enabled, log.Deliveries[1].Error)
	}
}

func TestNewRefusesBadConfiguration(t *testing.T) {
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store := openStore(t, srv.URI())
	for name, o := range map[string]platformhook.Options{
		"no URL":       {Secret: "s", Store: store},
		"relative URL": {URL: "/hooks", Secret: "s", Store: store},
		"ftp URL":      {URL: "ftp://example.test/", Secret: "s", Store: store},
		"no secret":    {URL: "https://example.test/hooks", Store: store},
		"no store":     {URL: "https://example.test/hooks", Secret: "s"},
	} {
		if _, err := platformhook.New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestTypesAreStable(t *testing.T) {
	want := []string{"tenant.registered", "tenant.creation-requested", "tenant.creating", "tenant.live", "tenant.creation-failed",
		"tenant.suspend-requested", "tenant.suspended", "tenant.resume-requested", "tenant.resume-failed", "tenant.deletion-pending",
		"tenant.deleting", "tenant.deletion-failed", "tenant.deleted", "tenant.updated"}
	if got := platformhook.Types(); !slices.Equal(got, want) {
		t.Fatalf("types %v, want %v (a change breaks receivers: document it in the changelog)", got, want)
	}
	for _, tc := range []struct {
		from, to controlplane.State
		want     string
	}{
		{"", controlplane.StateCreationRequested, "tenant.registered"},
		{controlplane.StateLive, controlplane.StateSuspendRequested, "tenant.suspend-requested"},
		{controlplane.StateDeleting, controlplane.StateDeleting, "tenant.updated"},
		{controlplane.StateDeleting, controlplane.StateDeleted, "tenant.deleted"},
	} {
		if got := platformhook.TypeOf(controlplane.Event{From: tc.from, To: tc.to}); got != tc.want {
			t.Errorf("%s → %s: %s, want %s", tc.from, tc.to, got, tc.want)
		}
	}
}

// TestOneDelivererAtATime: two control planes on one registry run a deliverer each; the lease
// lets only one send, so every event arrives once, in order.
func TestOneDelivererAtATime(t *testing.T) {
	srv, err := ferret.Start(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	store := openStore(t, srv.URI())
	rc := newReceiver(t)
	runDeliverer(t, store, rc.srv.URL, "cp-1")
	runDeliverer(t, openStore(t, srv.URI()), rc.srv.URL, "cp-2")

	ctx := context.Background()
	now := time.Now().UTC()
	tn := &controlplane.Tenant{ID: controlplane.NewTenantID(), Key: "initech", Name: "Initech", State: controlplane.StateCreationRequested,
		CreatedAt: now, UpdatedAt: now}
	if err := store.CreateTenant(ctx, tn, controlplane.Event{TenantID: tn.ID, To: tn.State, At: now}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []controlplane.State{controlplane.StateCreating, controlplane.StateLive, controlplane.StateSuspendRequested,
		controlplane.StateSuspended, controlplane.StateResumeRequested, controlplane.StateLive} {
		ev, err := tn.Transition(to, "test", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := store.SaveTenant(ctx, tn, ev); err != nil {
			t.Fatal(err)
		}
		tn.Cell.Address = "127.0.0.1:1" // a save without an event between two events
		if err := store.SaveTenant(ctx, tn, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "seven events delivered", 10*time.Second, func() bool { return len(rc.requests()) >= 7 })
	time.Sleep(300 * time.Millisecond) // a second sender would show up now
	var seqs []int64
	for _, r := range rc.requests() {
		seqs = append(seqs, r.body.Seq)
	}
	if want := []int64{1, 2, 4, 6, 8, 10, 12}; !slices.Equal(seqs, want) {
		t.Fatalf("sequence numbers received %v, want each event once, in order: %v", seqs, want)
	}
}
