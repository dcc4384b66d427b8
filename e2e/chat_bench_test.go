package e2e

// Issue 3's load benchmarks, all through the dev edge router against one cell:
//
//   - BenchmarkChatLoad: visitor→agent delivery latency and throughput with many concurrent chats,
//     then the highest total message rate the cell holds with p99 ≤ 50 ms;
//   - BenchmarkAcceptRace: accept latency when 50 agents race for each new chat;
//   - BenchmarkHistoryPage: latency of a 50-message history page in a tenant holding 100k
//     messages (seeded directly into MongoDB), and what seeding costs;
//   - BenchmarkSocketMemory: resident memory (cell and edge) per open idle visitor WebSocket.
//
// Each runs its scenario once (`make bench` passes -benchtime 1x) and reports figures with
// b.ReportMetric; each also prints a summary table. Sizes default to the and can be made
// smaller for development with environment variables (see cbSizes). Two more switches:
// ATENDE_BENCH_SETUP=api opens and accepts BenchmarkChatLoad's chats through the API instead of
// writing them to the database. (The embedded FerretDB adds the `_id` index its point reads use,
// ferret.IDIndexer, so every figure is with it.)
//
// Run one alone with e.g. `go test -run '^$' -bench ChatLoad -benchtime 1x -timeout 60m ./e2e`.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"atende/cell"
	"atende/cell/mongodb"

	"github.com/fasthttp/websocket"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// cbSizes are the benchmark sizes: the by default, each overridable by an environment
// variable (a positive integer) for quick development runs.
var cbSizes = struct {
	Chats, StepSeconds, WarmSeconds, RaceAgents, RaceRounds, HistoryMessages, HistoryChats, IdleSockets int
}{
	Chats:           cbEnvInt("ATENDE_BENCH_CHATS", 1000),              // concurrent chats, each 1 msg/s at the base step
	StepSeconds:     cbEnvInt("ATENDE_BENCH_STEP_SECONDS", 30),         // measured seconds of each rate step
	WarmSeconds:     cbEnvInt("ATENDE_BENCH_WARM_SECONDS", 2),          // unmeasured seconds at the start of each step
	RaceAgents:      cbEnvInt("ATENDE_BENCH_RACE_AGENTS", 50),          // agents racing to accept each chat
	RaceRounds:      cbEnvInt("ATENDE_BENCH_RACE_ROUNDS", 40),          // chats raced for
	HistoryMessages: cbEnvInt("ATENDE_BENCH_HISTORY_MESSAGES", 100000), // messages in the tenant
	HistoryChats:    cbEnvInt("ATENDE_BENCH_HISTORY_CHATS", 10),        // chats holding them (equal shares)
	IdleSockets:     cbEnvInt("ATENDE_BENCH_IDLE_SOCKETS", 2000),       // idle visitor sockets opened
}

func cbEnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// p99Budget is the latency the cell must hold at p99 for a rate step to count as held.
const p99Budget = 50 * time.Millisecond

// ---------------------------------------------------------------------------------------------
// Clients: HTTP and WebSocket through the edge, from chosen loopback source addresses.

// The cell limits visitor sessions and chat creation per client IP (60 a minute); the edge
// forwards the connection's address, so the benchmarks spread those requests over source
// addresses 127.77.x.y (all of 127/8 is loopback on Linux), cbPerIP per address.
const cbPerIP = 40

func cbSourceIP(i int) net.IP { return net.IPv4(127, 77, byte(i/250), byte(i%250+1)) }

// cbHTTP is an HTTP client of one tenant host through the edge, from one source address.
type cbHTTP struct {
	host string
	c    *http.Client
}

func newCBHTTP(s *stack, key string, ip net.IP, conns int) *cbHTTP {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	edge := strings.TrimPrefix(s.edge, "http://")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, edge)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
	}
	return &cbHTTP{host: s.host(key), c: &http.Client{Transport: tr, Timeout: 5 * time.Minute}}
}

// do sends a JSON request and decodes a 2xx JSON answer into out. It never fails the test
// itself (it runs on worker goroutines); callers check the status.
func (h *cbHTTP) do(method, path, token string, body, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+h.host+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if out != nil && resp.StatusCode < 300 && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, data, fmt.Errorf("%s %s: decoding %q: %w", method, path, data, err)
		}
	}
	return resp.StatusCode, data, nil
}

// expect calls do and turns an unexpected status into an error.
func (h *cbHTTP) expect(want int, method, path, token string, body, out any) error {
	st, data, err := h.do(method, path, token, body, out)
	if err != nil {
		return err
	}
	if st != want {
		return fmt.Errorf("%s %s: %d %s (want %d)", method, path, st, data, want)
	}
	return nil
}

// cbTenant is one tenant on a benchmark stack, with its admin logged in.
type cbTenant struct {
	s     *stack
	key   string
	tn    tenant
	admin session
	api   *cbHTTP // from 127.0.0.1

	mu   sync.Mutex
	byIP map[int]*cbHTTP
}

// cbNewTenant starts a stack (no dev tenant) and creates tenant key on the enterprise plan (no
// user or open-chat limit) with its admin logged in.
func cbNewTenant(b *testing.B, key string) *cbTenant {
	b.Helper()
	s := startStack(b, "ATENDE_SEED_DEV=false")
	tn, _ := s.createTenant(key)
	t := &cbTenant{s: s, key: key, tn: tn, api: newCBHTTP(s, key, nil, 64), byIP: map[int]*cbHTTP{}}
	t.admin = s.login(key, tn.Admin.Email, tn.Admin.Password)
	return t
}

// from returns the client of source address i.
func (t *cbTenant) from(i int) *cbHTTP {
	t.mu.Lock()
	defer t.mu.Unlock()
	h := t.byIP[i]
	if h == nil {
		h = newCBHTTP(t.s, t.key, cbSourceIP(i), 8)
		t.byIP[i] = h
	}
	return h
}

// cbEach runs f(0…n-1) on width workers and returns the first error.
func cbEach(n, width int, f func(i int) error) error {
	var (
		next  atomic.Int64
		first error
		once  sync.Once
		wg    sync.WaitGroup
	)
	for w := 0; w < min(width, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop handing out work
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// cbAgent is an agent with an access token.
type cbAgent struct {
	ID, Email, Token string
}

// createAgents creates n agents with the given capacity (0: the tenant default) and logs each
// in.
func (t *cbTenant) createAgents(n, capacity int) ([]cbAgent, error) {
	agents := make([]cbAgent, n)
	err := cbEach(n, 4, func(i int) error {
		email := fmt.Sprintf("agent%03d@%s.test", i, t.key)
		var created struct {
			Agent struct {
				ID string `json:"id"`
			} `json:"agent"`
		}
		if err := t.api.expect(201, "POST", "/api/agents", t.admin.AccessToken, map[string]string{"email": email, "name": fmt.Sprint("Agent ", i), "password": "agent-password"}, &created); err != nil {
			return err
		}
		if capacity > 0 {
			if err := t.api.expect(200, "PATCH", "/api/agents/"+created.Agent.ID, t.admin.AccessToken, map[string]int{"capacity": capacity}, nil); err != nil {
				return err
			}
		}
		var sess session
		if err := t.api.expect(200, "POST", "/api/auth/login", "", map[string]string{"email": email, "password": "agent-password"}, &sess); err != nil {
			return err
		}
		agents[i] = cbAgent{ID: created.Agent.ID, Email: email, Token: sess.AccessToken}
		return nil
	})
	return agents, err
}

// cbVisitor is a visitor with an open chat (or only a session when ChatID is empty).
type cbVisitor struct {
	Token, ID, ChatID string
}

// newVisitor opens a visitor session from source address ip; with chat, it also opens a chat
// (with a first message when first is set).
func (t *cbTenant) newVisitor(ip int, withChat, first bool) (cbVisitor, error) {
	h := t.from(ip)
	var vs struct {
		VisitorToken string `json:"visitorToken"`
		VisitorID    string `json:"visitorId"`
	}
	if err := h.expect(201, "POST", "/api/visitor/session", "", map[string]string{"name": "Vera"}, &vs); err != nil {
		return cbVisitor{}, err
	}
	v := cbVisitor{Token: vs.VisitorToken, ID: vs.VisitorID}
	if !withChat {
		return v, nil
	}
	body := map[string]string{}
	if first {
		body = map[string]string{"message": "Hello, I need help", "clientMsgId": "first"}
	}
	var c chat
	if err := h.expect(201, "POST", "/api/chats", v.Token, body, &c); err != nil {
		return cbVisitor{}, err
	}
	v.ChatID = c.ID
	return v, nil
}

// openChats opens n visitor chats, cbPerIP per source address starting at address ipBase.
func (t *cbTenant) openChats(n, ipBase int, first bool) ([]cbVisitor, error) {
	out := make([]cbVisitor, n)
	err := cbEach(n, 8, func(i int) error {
		v, err := t.newVisitor(ipBase+i/cbPerIP, true, first)
		out[i] = v
		return err
	})
	return out, err
}

// dialWS opens a WebSocket to the tenant's /ws through the edge with a token (no ticket), with
// the tenant's own Origin, as the widget and console do.
func (t *cbTenant) dialWS(token string) (*websocket.Conn, error) {
	edge := strings.TrimPrefix(t.s.edge, "http://")
	d := websocket.Dialer{
		NetDial:          func(network, _ string) (net.Conn, error) { return net.Dial(network, edge) },
		HandshakeTimeout: 20 * time.Second,
	}
	conn, resp, err := d.Dial("ws://"+t.s.host(t.key)+"/ws?token="+token, http.Header{"Origin": {"http://" + t.s.host(t.key)}})
	if err != nil {
		st := 0
		if resp != nil {
			st = resp.StatusCode
		}
		return nil, fmt.Errorf("dial: %v (status %d)", err, st)
	}
	return conn, nil
}

// cbFrame is the part of a server frame the benchmarks read.
type cbFrame struct {
	Type   string `json:"type"`
	ChatID string `json:"chatId"`
	Seq    int64  `json:"seq"`
	Body   string `json:"body"`
	Code   string `json:"code"`
}

// joinChats sends join-chat for every chat and waits until each is joined (before any reader
// goroutine runs on conn).
func joinChats(conn *websocket.Conn, chatIDs []string) error {
	for _, id := range chatIDs {
		if err := conn.WriteJSON(map[string]string{"type": "join-chat", "chatId": id}); err != nil {
			return err
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for joined := 0; joined < len(chatIDs); {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("waiting for joined (%d of %d): %w", joined, len(chatIDs), err)
		}
		var f cbFrame
		_ = json.Unmarshal(data, &f)
		switch f.Type {
		case "joined":
			joined++
		case "error":
			return fmt.Errorf("join-chat refused: %s", data)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------------------------
// Process figures: CPU time and RSS from /proc, the cell's own Prometheus series.

// cpuSeconds returns the user+system CPU time of pid.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // field 14 of stat
	st, _ := strconv.ParseFloat(f[12], 64) // field 15
	return (ut + st) / 100                 // USER_HZ is 100 on Linux
}

// cellEnv returns the environment of the cell process pid.
func cellEnv(tb testing.TB, pid int) map[string]string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		tb.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			env[k] = v
		}
	}
	return env
}

// cellMetrics reads the named series from the cell's /metrics, asked on its own address (the
// cell serves metrics only to a Host that is not a tenant host).
func cellMetrics(addr string, names ...string) map[string]float64 {
	out := map[string]float64{}
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		for _, n := range names {
			if rest, ok := strings.CutPrefix(line, n+" "); ok {
				out[n], _ = strconv.ParseFloat(strings.TrimSpace(rest), 64)
			}
		}
	}
	return out
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

// cbTable prints a summary table to stdout (benchmark output), columns aligned.
func cbTable(title string, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var sb strings.Builder
	line := func(cells []string) {
		sb.WriteString("|")
		for i, c := range cells {
			sb.WriteString(" " + c + strings.Repeat(" ", widths[i]-len([]rune(c))) + " |")
		}
		sb.WriteString("\n")
	}
	sb.WriteString("\n" + title + " (load average " + loadAvg() + ")\n")
	line(header)
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, r := range rows {
		line(r)
	}
	fmt.Print(sb.String())
}

// loadAvg returns the machine's 1-minute load average (the benchmarks share 2 cores with other
// builds; the tables show how busy the machine was).
func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// ---------------------------------------------------------------------------------------------
// 1. Delivery latency and throughput with many concurrent chats.

// loadRecorder collects what the agent and visitor sockets receive during the load.
type loadRecorder struct {
	base time.Time // send times in message bodies are nanoseconds since base (monotonic)

	mu        sync.Mutex
	step      int             // the step being measured
	lat       []time.Duration // non-warm-up messages of step
	latWarm   []time.Duration // warm-up messages of step (used when a step stopped in its warm-up)
	delivered int64           // messages of step received by agents (warm-up included)
	stale     int64           // messages of an earlier step received late
	errs      map[string]int  // error frames by code, and socket failures
	refused   atomic.Int64    // error frames on visitor sockets (a send that will not arrive)
	acks      atomic.Int64
}

// message records a message frame received by an agent at now (since base).
func (r *loadRecorder) message(body string, now time.Duration) {
	// Body: "L<step>.<warm 0|1>.<sent ns since base>"
	rest, ok := strings.CutPrefix(body, "L")
	if !ok {
		return
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return
	}
	step, _ := strconv.Atoi(parts[0])
	sent, _ := strconv.ParseInt(parts[2], 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	if step != r.step {
		r.stale++
		return
	}
	r.delivered++
	if parts[1] == "0" {
		r.lat = append(r.lat, now-time.Duration(sent))
	} else {
		r.latWarm = append(r.latWarm, now-time.Duration(sent))
	}
}

func (r *loadRecorder) fail(code string) {
	r.mu.Lock()
	r.errs[code]++
	r.mu.Unlock()
}

func (r *loadRecorder) deliveredNow() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered
}

// stepResult is one rate step's outcome.
type stepResult struct {
	rate               int // offered msgs/s, all chats together
	sent, delivered    int64
	refused            int64         // sends answered with an error frame
	window             time.Duration // measured sending time (warm-up excluded)
	sending            time.Duration // time from the first send to the last
	measured           int           // latencies recorded
	p50, p95, p99, max time.Duration
	cellCores, cpCores float64 // CPU used while sending (cores)
	benchCores         float64
	errs               map[string]int
	stale              int64
	drainedIn          time.Duration
	// saturated is set when the backlog (sent, neither delivered nor refused) grew past
	// cbBacklog seconds of the offered rate: sending stopped early.
	saturated bool
	drained   bool // every sent message was delivered or refused before the next step
	// throughput is what agents received per second while sending (the cell's capacity when
	// saturated).
	throughput float64
	// settled is how long the cell took after the drain to write the chats' lastSeq hints
	// (settle); behind is how many chats were behind when that started.
	settled   time.Duration
	behind    int
	settledOK bool
}

// cbBacklog is how many seconds of the offered rate (at least 100 messages, at most 500) may be
// outstanding before a step is called saturated and stops sending, so an overloaded cell is not
// buried under minutes of backlog; it then drains the backlog at full speed, which measures its
// capacity.
const cbBacklog = 3

func (r stepResult) msgsPerSec() float64 {
	if r.saturated {
		return r.throughput
	}
	return float64(r.delivered) / r.sending.Seconds()
}

func (r stepResult) held() bool {
	return !r.saturated && r.measured > 0 && r.p99 <= p99Budget && r.delivered == r.sent
}

// BenchmarkChatLoad opens cbSizes.Chats chats, each accepted by one of the agents (capacity 50,
// 50 chats per agent), connects every visitor and every agent by WebSocket through the edge (each
// agent socket follows its 50 chats), and has every visitor send at a fixed rate, visitor sockets
// sending and agent sockets receiving. It measures, per message, the time from the visitor's
// write to the agent socket's read.
//
// Before the steps, every chat sends one message with at most 64 in flight (the warm-up: each
// chat's seq state loaded, as in a conversation in progress; its rate is the cell's closed-loop
// capacity). The base step is 1 msg/s per chat (1,000 msgs/s for 1,000 chats). If the base step
// holds p99 ≤ 50 ms without loss, the total rate steps up by half the base until a step does not,
// and the highest step held is the rate the cell holds. Otherwise the rate steps down, halving
// and never above 70% of the capacity measured, until a step holds; when the warm-up already
// shows the base rate is out of reach, that search runs first and the base step last. A step
// whose backlog exceeds cbBacklog seconds of its rate stops sending early (saturated). After
// the warm-up and after each step it waits until the cell has written every chat's lastSeq hint
// (settle), so no step starts inside the previous one's flush; the table shows how long that
// took.
func BenchmarkChatLoad(b *testing.B) {
	for range b.N {
		n := cbSizes.Chats
		setupStart := time.Now()
		t := cbNewTenant(b, "acme")
		cellPid := cellPID(b, t.tn.ID)

		// Agents: capacity 50 (cell.MaxCapacity) each, so 50 chats per agent; one socket per agent
		// follows all its chats (realtime.MaxRoomsPerClient is 64).
		perAgent := min(cell.MaxCapacity, n)
		nAgents := (n + perAgent - 1) / perAgent
		agents, err := t.createAgents(nAgents, cell.MaxCapacity)
		if err != nil {
			b.Fatalf("agents: %v", err)
		}
		tAgents := time.Since(setupStart)

		// Chats: by default visitor sessions come from the API and the active chats are written
		// straight into the tenant's database (seedActiveChats), because opening and accepting
		// 1,000 chats through the API takes tens of minutes on embedded FerretDB (the accept
		// path is BenchmarkAcceptRace's). ATENDE_BENCH_SETUP=api opens every chat through the
		// API (with a first message) and has the agents accept them.
		viaAPI := os.Getenv("ATENDE_BENCH_SETUP") == "api"
		t0 := time.Now()
		var visitors []cbVisitor
		if viaAPI {
			visitors, err = t.openChats(n, 0, true)
		} else {
			visitors = make([]cbVisitor, n)
			err = cbEach(n, 8, func(i int) error {
				v, err := t.newVisitor(i/cbPerIP, false, false)
				visitors[i] = v
				return err
			})
		}
		if err != nil {
			b.Fatalf("chats: %v", err)
		}
		tChats := time.Since(t0)

		t0 = time.Now()
		var acceptLat []time.Duration
		if viaAPI {
			var acceptMu sync.Mutex
			err = cbEach(nAgents, nAgents, func(a int) error {
				for i := a * perAgent; i < min(n, (a+1)*perAgent); i++ {
					s := time.Now()
					if err := t.api.expect(200, "POST", "/api/chat/"+visitors[i].ChatID+"/accept", agents[a].Token, nil, nil); err != nil {
						return fmt.Errorf("agent %d accept %d: %w", a, i, err)
					}
					acceptMu.Lock()
					acceptLat = append(acceptLat, time.Since(s))
					acceptMu.Unlock()
				}
				return nil
			})
			if err != nil {
				b.Fatalf("accepts: %v", err)
			}
		} else {
			seedActiveChats(b, t, visitors, agents, perAgent)
		}
		tAccepts := time.Since(t0)
		sortDurations(acceptLat)

		rec := &loadRecorder{base: time.Now(), step: -1, errs: map[string]int{}}
		t0 = time.Now()
		agentConns := make([]*websocket.Conn, nAgents)
		if err := cbEach(nAgents, 4, func(a int) error {
			conn, err := t.dialWS(agents[a].Token)
			if err != nil {
				return err
			}
			agentConns[a] = conn
			var ids []string
			for i := a * perAgent; i < min(n, (a+1)*perAgent); i++ {
				ids = append(ids, visitors[i].ChatID)
			}
			return joinChats(conn, ids)
		}); err != nil {
			b.Fatalf("agent sockets: %v", err)
		}
		visitorConns := make([]*websocket.Conn, n)
		if err := cbEach(n, 16, func(i int) error {
			conn, err := t.dialWS(visitors[i].Token)
			if err != nil {
				return err
			}
			visitorConns[i] = conn
			return joinChats(conn, []string{visitors[i].ChatID})
		}); err != nil {
			b.Fatalf("visitor sockets: %v", err)
		}
		tSockets := time.Since(t0)
		var closing atomic.Bool
		defer func() {
			closing.Store(true)
			for _, c := range append(agentConns, visitorConns...) {
				if c != nil {
					c.Close()
				}
			}
		}()
		for _, conn := range agentConns {
			go func() {
				for {
					_, data, err := conn.ReadMessage()
					if err != nil {
						if !closing.Load() {
							rec.fail("agent-socket-closed")
						}
						return
					}
					now := time.Since(rec.base)
					var f cbFrame
					if json.Unmarshal(data, &f) != nil {
						continue
					}
					switch f.Type {
					case "message":
						rec.message(f.Body, now)
					case "error":
						rec.fail("agent-error-" + f.Code)
					}
				}
			}()
		}
		lastAcked := make([]atomic.Int64, n) // each chat's highest acknowledged seq
		for i, conn := range visitorConns {
			go func() {
				for {
					_, data, err := conn.ReadMessage()
					if err != nil {
						if !closing.Load() {
							rec.fail("visitor-socket-closed")
						}
						return
					}
					// Only acks and errors matter here; echoes of the visitor's own messages
					// are skipped without decoding.
					if bytes.HasPrefix(data, []byte(`{"type":"ack"`)) {
						var f cbFrame
						_ = json.Unmarshal(data, &f)
						if f.Seq > lastAcked[i].Load() {
							lastAcked[i].Store(f.Seq)
						}
						rec.acks.Add(1)
						continue
					}
					if bytes.HasPrefix(data, []byte(`{"type":"error"`)) {
						var f cbFrame
						_ = json.Unmarshal(data, &f)
						rec.refused.Add(1)
						rec.fail("visitor-error-" + f.Code)
					}
				}
			}()
		}
		setup := time.Since(setupStart)

		// Idle: what the cell and the control plane (FerretDB, edge) burn with every chat open
		// and nobody writing (timers, routing passes, pings).
		time.Sleep(3 * time.Second) // let the joins' routing passes finish
		idleCell, idleCP, idle0 := cpuSeconds(cellPid), cpuSeconds(t.s.cmd.Process.Pid), time.Now()
		time.Sleep(10 * time.Second)
		idleWall := time.Since(idle0).Seconds()
		idleCell, idleCP = (cpuSeconds(cellPid)-idleCell)/idleWall, (cpuSeconds(t.s.cmd.Process.Pid)-idleCP)/idleWall

		// settle waits until the cell has written every chat's lastSeq hint (service.flushLast:
		// one update per chat with new messages, each chat's lock held meanwhile) up to the
		// chat's highest acknowledged seq, so a step does not start inside the previous step's
		// flush. It reads the chats from the database every 2 s, for at most 5 minutes, and
		// returns how long that took and how many chats were behind at first.
		mc, err := mongo.Connect(options.Client().ApplyURI(cellEnv(b, cellPid)[cell.EnvMongoURI]))
		if err != nil {
			b.Fatal(err)
		}
		defer mc.Disconnect(context.Background())
		chatsColl := mc.Database(cellEnv(b, cellPid)[cell.EnvDatabase]).Collection("chats")
		settle := func() (took time.Duration, behind int, ok bool) {
			start := time.Now()
			for first := true; time.Since(start) < 5*time.Minute; first = false {
				cur, err := chatsColl.Find(context.Background(), bson.D{{Key: "tenantId", Value: t.tn.ID}},
					options.Find().SetProjection(bson.D{{Key: "lastSeq", Value: 1}}))
				if err != nil {
					b.Fatal(err)
				}
				var docs []struct {
					ID      string `bson:"_id"`
					LastSeq int64  `bson:"lastSeq"`
				}
				if err := cur.All(context.Background(), &docs); err != nil {
					b.Fatal(err)
				}
				stored := make(map[string]int64, len(docs))
				for _, d := range docs {
					stored[d.ID] = d.LastSeq
				}
				pending := 0
				for i, v := range visitors {
					if stored[v.ChatID] < lastAcked[i].Load() {
						pending++
					}
				}
				if first {
					behind = pending
				}
				if pending == 0 {
					return time.Since(start), behind, true
				}
				time.Sleep(2 * time.Second)
			}
			return time.Since(start), behind, false
		}

		// Warm-up: every chat sends one message (at most 64 in flight) before the steps, so each
		// chat's seq state is loaded and the steps measure chats in progress.
		vmu := make([]sync.Mutex, n)
		t0 = time.Now()
		for i := range visitors {
			for int(rec.acks.Load()+rec.refused.Load()) <= i-64 {
				time.Sleep(2 * time.Millisecond)
			}
			vmu[i].Lock()
			err := visitorConns[i].WriteJSON(map[string]string{"type": "send-message", "chatId": visitors[i].ChatID, "body": "W", "clientMsgId": "warm"})
			vmu[i].Unlock()
			if err != nil {
				b.Fatalf("warm-up: %v", err)
			}
		}
		for rec.acks.Load()+rec.refused.Load() < int64(n) && time.Since(t0) < 10*time.Minute {
			time.Sleep(5 * time.Millisecond)
		}
		tWarm := time.Since(t0)
		warmRate := float64(n) / tWarm.Seconds() // closed loop, 64 in flight: a capacity estimate
		warmSettle, warmBehind, warmSettled := settle()

		runStep := func(step, rate int) stepResult {
			warm := time.Duration(cbSizes.WarmSeconds) * time.Second
			window := time.Duration(cbSizes.StepSeconds) * time.Second
			period := time.Duration(float64(time.Second) * float64(n) / float64(rate)) // per visitor
			rec.mu.Lock()
			rec.step, rec.lat, rec.latWarm, rec.delivered, rec.stale, rec.errs = step, nil, nil, 0, 0, map[string]int{}
			rec.mu.Unlock()
			refused0 := rec.refused.Load()
			var sent atomic.Int64
			var abort atomic.Bool
			cpu0, cp0, me0, wall0 := cpuSeconds(cellPid), cpuSeconds(t.s.cmd.Process.Pid), cpuSeconds(os.Getpid()), time.Now()
			start := time.Now().Add(50 * time.Millisecond)
			end := start.Add(warm + window)
			sendersDone := make(chan struct{})
			go func() { // stop sending once the backlog exceeds cbBacklog seconds of the rate
				tick := time.NewTicker(200 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-sendersDone:
						return
					case <-tick.C:
						if sent.Load()-rec.deliveredNow()-(rec.refused.Load()-refused0) > int64(min(max(cbBacklog*rate, 100), 500)) {
							abort.Store(true)
							return
						}
					}
				}
			}()
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					chatID := visitors[i].ChatID
					buf := make([]byte, 0, 192)
					k := 0
					for at := start.Add(period * time.Duration(i) / time.Duration(n)); at.Before(end); at = at.Add(period) {
						time.Sleep(time.Until(at))
						if abort.Load() {
							return
						}
						warmFlag := "0"
						if at.Sub(start) < warm {
							warmFlag = "1"
						}
						buf = buf[:0]
						buf = append(buf, `{"type":"send-message","chatId":"`...)
						buf = append(buf, chatID...)
						buf = append(buf, `","clientMsgId":"L`...)
						buf = strconv.AppendInt(buf, int64(step), 10)
						buf = append(buf, '-')
						buf = strconv.AppendInt(buf, int64(k), 10)
						buf = append(buf, `","body":"L`...)
						buf = strconv.AppendInt(buf, int64(step), 10)
						buf = append(buf, '.')
						buf = append(buf, warmFlag...)
						buf = append(buf, '.')
						buf = strconv.AppendInt(buf, int64(time.Since(rec.base)), 10)
						buf = append(buf, `"}`...)
						vmu[i].Lock()
						err := visitorConns[i].WriteMessage(websocket.TextMessage, buf)
						vmu[i].Unlock()
						if err != nil {
							rec.fail("visitor-write")
							return
						}
						sent.Add(1)
						k++
					}
				}()
			}
			wg.Wait()
			close(sendersDone)
			sendDone := time.Now()
			deliveredWhileSending := rec.deliveredNow()
			cpu1, cp1, me1, wall1 := cpuSeconds(cellPid), cpuSeconds(t.s.cmd.Process.Pid), cpuSeconds(os.Getpid()), time.Now()
			// Drain: wait until every sent message was delivered or refused, giving up after 30 s
			// without progress (or 10 minutes in all).
			drained := false
			last, lastProgress := int64(-1), time.Now()
			deliveredAtSendDone := rec.deliveredNow()
			for time.Since(sendDone) < 10*time.Minute && time.Since(lastProgress) < 30*time.Second {
				d := rec.deliveredNow() + rec.refused.Load() - refused0
				if d >= sent.Load() {
					drained = true
					break
				}
				if d != last {
					last, lastProgress = d, time.Now()
				}
				time.Sleep(5 * time.Millisecond)
			}
			drainTime := time.Since(sendDone)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			lat := rec.lat
			if len(lat) == 0 { // stopped (saturated) before its warm-up ended: time what was sent
				lat = rec.latWarm
			}
			sortDurations(lat)
			res := stepResult{rate: rate, sent: sent.Load(), delivered: rec.delivered, refused: rec.refused.Load() - refused0,
				window: window, sending: sendDone.Sub(start), measured: len(lat),
				p50: percentile(lat, 50), p95: percentile(lat, 95), p99: percentile(lat, 99), errs: rec.errs, stale: rec.stale,
				drainedIn: time.Since(sendDone), saturated: abort.Load(), drained: drained,
				throughput: float64(deliveredWhileSending) / sendDone.Sub(start).Seconds()}
			if len(lat) > 0 {
				res.max = lat[len(lat)-1]
			}
			// A saturated cell drains its backlog at full speed: that rate is its capacity.
			if drainedMsgs := rec.delivered - deliveredAtSendDone; res.saturated && drainedMsgs >= 50 {
				res.throughput = float64(drainedMsgs) / drainTime.Seconds()
			}
			wall := wall1.Sub(wall0).Seconds()
			res.cellCores, res.cpCores, res.benchCores = (cpu1-cpu0)/wall, (cp1-cp0)/wall, (me1-me0)/wall
			rec.mu.Unlock()
			res.settled, res.behind, res.settledOK = settle()
			rec.mu.Lock()
			return res
		}

		// Steps. The base step (1 msg/s per chat) is the figure. When the closed-loop
		// warm-up already shows the cell cannot carry it, the search for the held rate runs
		// first, downward from 70% of the warm-up rate, while the cell is healthy, and the base
		// step runs last: an overloaded cell on embedded FerretDB may not recover for minutes.
		var results []stepResult
		held, over := 0, 0
		stepDown := func(rate int) {
			for tries := 0; tries < 8 && rate >= 1; tries++ {
				r := runStep(len(results), rate)
				results = append(results, r)
				if r.held() {
					held = r.rate
					return
				}
				over = r.rate // the lowest rate over budget so far
				if !r.drained {
					time.Sleep(30 * time.Second) // let the cell work off what is left
				}
				next := r.rate / 2
				if r.saturated {
					next = min(next, int(0.7*max(r.throughput, warmRate)))
				}
				rate = next
			}
		}
		var base stepResult
		if warmRate >= float64(n) {
			base = runStep(0, n)
			results = append(results, base)
			if base.held() {
				held = base.rate
				for k := 3; k <= 8; k++ { // 1.5×, 2× … 4× the base
					r := runStep(len(results), n*k/2)
					results = append(results, r)
					if !r.held() {
						over = r.rate
						break
					}
					held = r.rate
				}
			} else {
				over = base.rate
				if !base.drained {
					time.Sleep(30 * time.Second)
				}
				next := n / 2
				if base.saturated {
					next = min(next, int(0.7*max(base.throughput, warmRate)))
				}
				stepDown(next)
			}
		} else {
			stepDown(min(n/2, int(0.7*warmRate)))
			time.Sleep(5 * time.Second)
			base = runStep(len(results), n)
			results = append(results, base)
			switch {
			case base.held():
				held = max(held, base.rate)
			case over == 0 || over > base.rate:
				over = base.rate
			}
		}
		closing.Store(true)

		if base.measured > 0 { // nothing timed (nothing delivered) is not 0 ms
			b.ReportMetric(ms(base.p50), "p50-ms")
			b.ReportMetric(ms(base.p95), "p95-ms")
			b.ReportMetric(ms(base.p99), "p99-ms")
			b.ReportMetric(ms(base.max), "max-ms")
		}
		b.ReportMetric(base.msgsPerSec(), "msgs/s")
		b.ReportMetric(float64(base.sent-base.delivered-base.refused), "unanswered-msgs")
		b.ReportMetric(float64(held), "held-msgs/s")
		b.ReportMetric(float64(over), "over-msgs/s")
		b.ReportMetric(base.cellCores*100, "cell-cpu-%")
		b.ReportMetric(base.cpCores*100, "cp-cpu-%")
		b.ReportMetric(setup.Seconds(), "setup-s")
		b.ReportMetric(idleCP*100, "idle-cp-cpu-%")
		b.ReportMetric(warmRate, "closed-loop-msgs/s")
		b.ReportMetric(warmSettle.Seconds(), "warmup-flush-s")

		rows := [][]string{}
		for _, r := range results {
			verdict := "held"
			switch {
			case r.saturated:
				verdict = fmt.Sprintf("saturated after %.1f s", r.sending.Seconds())
			case !r.held():
				verdict = "over"
			}
			errs := []string{}
			for k, v := range r.errs {
				errs = append(errs, fmt.Sprintf("%s×%d", k, v))
			}
			sort.Strings(errs)
			if r.stale > 0 {
				errs = append(errs, fmt.Sprintf("late-from-earlier-step×%d", r.stale))
			}
			if !r.drained {
				errs = append(errs, fmt.Sprintf("not drained after %.0f s", r.drainedIn.Seconds()))
			}
			flush := fmt.Sprintf("%.0f s (%d chats)", r.settled.Seconds(), r.behind)
			if !r.settledOK {
				flush = fmt.Sprintf("> %.0f s (%d chats)", r.settled.Seconds(), r.behind)
			}
			lat := []string{f1(ms(r.p50)), f1(ms(r.p95)), f1(ms(r.p99)), f1(ms(r.max))}
			if r.measured == 0 {
				lat = []string{"n/a", "n/a", "n/a", "n/a"}
			}
			rows = append(rows, append(append([]string{strconv.Itoa(r.rate), f1(r.msgsPerSec()), fmt.Sprint(r.sent), fmt.Sprint(r.sent - r.delivered - r.refused), fmt.Sprint(r.refused)},
				lat...),
				f1(r.cellCores*100), f1(r.cpCores*100), f1(r.benchCores*100), verdict, flush, strings.Join(errs, " ")))
		}
		cbTable(fmt.Sprintf("BenchmarkChatLoad: %d chats, %d agents × %d chats, %d s per step (+%d s warm-up), p99 budget %v; held %d msgs/s",
			n, nAgents, perAgent, cbSizes.StepSeconds, cbSizes.WarmSeconds, p99Budget, held),
			[]string{"offered msgs/s", "delivered msgs/s", "sent", "unanswered", "refused", "p50 ms", "p95 ms", "p99 ms", "max ms", "cell cpu %", "controlplane cpu %", "bench cpu %", "verdict", "lastSeq flush after", "errors"}, rows)
		chatsRow := []string{"visitor sessions (API)", f1(tChats.Seconds()), fmt.Sprintf("%d visitor sessions", n)}
		acceptRow := []string{"active chats written to the database", f1(tAccepts.Seconds()), fmt.Sprintf("%d chats, %d per agent, with their slot and assignment claims", n, perAgent)}
		if viaAPI {
			chatsRow = []string{"visitor sessions + chats (API)", f1(tChats.Seconds()), fmt.Sprintf("%d chats with a first message", n)}
			acceptRow = []string{"accepts (API)", f1(tAccepts.Seconds()), fmt.Sprintf("%d accepts, %d agents in parallel; accept p50 %.1f ms, p99 %.1f ms, max %.1f ms",
				len(acceptLat), nAgents, ms(percentile(acceptLat, 50)), ms(percentile(acceptLat, 99)), ms(percentile(acceptLat, 100)))}
		}
		cbTable("BenchmarkChatLoad setup", []string{"phase", "seconds", "note"}, [][]string{
			{"create + log in agents", f1(tAgents.Seconds()), fmt.Sprintf("%d agents, capacity %d", nAgents, cell.MaxCapacity)},
			chatsRow, acceptRow,
			{"sockets + joins", f1(tSockets.Seconds()), fmt.Sprintf("%d agent + %d visitor sockets", nAgents, n)},
			{"total setup", f1(setup.Seconds()), ""},
			{"idle (before the warm-up)", "10.0", fmt.Sprintf("all chats open, no messages: cell %.1f%% CPU, control plane %.1f%% CPU", idleCell*100, idleCP*100)},
			{"warm-up", f1(tWarm.Seconds()), fmt.Sprintf("one message per chat, 64 in flight (closed loop): %.1f msgs/s", warmRate)},
			{"lastSeq flush after the warm-up", f1(warmSettle.Seconds()), fmt.Sprintf("%d chats behind at first; all written: %v", warmBehind, warmSettled)},
		})
		closing.Store(true)
		for _, c := range append(agentConns, visitorConns...) {
			c.Close()
		}
		t.s.stop()
	}
}

// seedActiveChats writes one active chat per visitor straight into the tenant's database, as
// opening it (service.newOrReopened) and an agent's accept (service.assign) would leave it:
// agent a holds chats a*perAgent … (a+1)*perAgent-1, each with its capacity slot
// (mongodb.SlotID) and its first assignment claim, the chat's history recording both
// transitions, and no message yet.
func seedActiveChats(tb testing.TB, t *cbTenant, visitors []cbVisitor, agents []cbAgent, perAgent int) {
	tb.Helper()
	env := cellEnv(tb, cellPID(tb, t.tn.ID))
	client, err := mongo.Connect(options.Client().ApplyURI(env[cell.EnvMongoURI]))
	if err != nil {
		tb.Fatal(err)
	}
	defer client.Disconnect(context.Background())
	db := client.Database(env[cell.EnvDatabase])
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	var chats, claims []any
	for i := range visitors {
		a := i / perAgent
		agent := agents[a]
		name := fmt.Sprint("Agent ", a)
		chatID := fmt.Sprintf("bench%027d", i)
		slot := mongodb.SlotID(agent.ID, i%perAgent)
		visitor := cell.Author{Role: cell.RoleVisitor, ID: visitors[i].ID, Name: "Vera"}
		accepted := now
		chats = append(chats, cell.Chat{ID: chatID, TenantID: t.tn.ID, Status: cell.ChatActive, VisitorID: visitors[i].ID,
			Visitor: cell.Visitor{ID: visitors[i].ID, TenantID: t.tn.ID, Name: "Vera", CreatedAt: now},
			AgentID: agent.ID, AgentName: name, CreatedAt: now, AcceptedAt: &accepted, LastActivityAt: now,
			OpenKey: visitors[i].ID, Labels: []string{}, Assignment: 1, SlotID: slot,
			History: []cell.ChatTransition{
				{Type: cell.TransitionCreated, To: cell.ChatQueued, Actor: visitor, At: now},
				{Type: cell.TransitionAccepted, From: cell.ChatQueued, To: cell.ChatActive, At: now, AgentID: agent.ID,
					Actor: cell.Author{Role: cell.RoleAgent, ID: agent.ID, Name: name}},
			}})
		claims = append(claims,
			bson.D{{Key: "_id", Value: slot}, {Key: "tenantId", Value: t.tn.ID}, {Key: "holder", Value: chatID}, {Key: "at", Value: now}},
			bson.D{{Key: "_id", Value: fmt.Sprintf("assign:%s:1", chatID)}, {Key: "tenantId", Value: t.tn.ID}, {Key: "holder", Value: agent.ID}, {Key: "at", Value: now}})
		visitors[i].ChatID = chatID
	}
	for _, set := range []struct {
		coll string
		docs []any
	}{{"chats", chats}, {"claims", claims}} {
		for i := 0; i < len(set.docs); i += 500 {
			if _, err := db.Collection(set.coll).InsertMany(ctx, set.docs[i:min(i+500, len(set.docs))]); err != nil {
				tb.Fatalf("seeding %s: %v", set.coll, err)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// 2. Accept latency under a 50-agent race.

// BenchmarkAcceptRace creates 50 agents (each with a console socket open, as in real life) and,
// for each of cbSizes.RaceRounds new chats, has all 50 POST /api/chat/{id}/accept at once through
// the edge (each agent with its own warm keep-alive connection). It reports the latency of the
// winning accept and of the 409 answers, and checks that each round has exactly one winner.
func BenchmarkAcceptRace(b *testing.B) {
	for range b.N {
		nAgents, rounds := cbSizes.RaceAgents, cbSizes.RaceRounds
		t := cbNewTenant(b, "acme")
		// Capacity 50 so no agent runs out of slots however many rounds it wins.
		agents, err := t.createAgents(nAgents, cell.MaxCapacity)
		if err != nil {
			b.Fatalf("agents: %v", err)
		}
		clients := make([]*cbHTTP, nAgents)
		for i := range clients {
			clients[i] = newCBHTTP(t.s, t.key, nil, 1)
			if err := clients[i].expect(200, "GET", "/api/auth/me", agents[i].Token, nil, nil); err != nil { // warm the connection
				b.Fatal(err)
			}
		}
		var consoles []*websocket.Conn
		for _, a := range agents {
			conn, err := t.dialWS(a.Token)
			if err != nil {
				b.Fatal(err)
			}
			consoles = append(consoles, conn)
			go func() { // drain queue and accept events like a console
				for {
					if _, _, err := conn.ReadMessage(); err != nil {
						return
					}
				}
			}()
		}
		var win, lose, race []time.Duration
		other := map[int]int{}
		badRounds := 0
		for round := 0; round < rounds; round++ {
			v, err := t.newVisitor(round/cbPerIP, true, true)
			if err != nil {
				b.Fatalf("round %d: %v", round, err)
			}
			time.Sleep(100 * time.Millisecond) // let the chat.queued fan-out and routing pass settle
			status := make([]int, nAgents)
			took := make([]time.Duration, nAgents)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range agents {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					s := time.Now()
					st, _, err := clients[i].do("POST", "/api/chat/"+v.ChatID+"/accept", agents[i].Token, nil, nil)
					took[i] = time.Since(s)
					if err != nil {
						st = -1
					}
					status[i] = st
				}()
			}
			raceStart := time.Now()
			close(start)
			wg.Wait()
			race = append(race, time.Since(raceStart))
			winners := 0
			for i, st := range status {
				switch st {
				case 200:
					winners++
					win = append(win, took[i])
				case 409:
					lose = append(lose, took[i])
				default:
					other[st]++
				}
			}
			if winners != 1 {
				badRounds++
			}
		}
		for _, c := range consoles {
			c.Close()
		}
		if badRounds > 0 || len(other) > 0 {
			b.Errorf("%d of %d rounds without exactly one winner; other statuses %v", badRounds, rounds, other)
		}
		sortDurations(win)
		sortDurations(lose)
		sortDurations(race)
		b.ReportMetric(ms(percentile(win, 50)), "win-p50-ms")
		b.ReportMetric(ms(percentile(win, 99)), "win-p99-ms")
		b.ReportMetric(ms(percentile(lose, 50)), "409-p50-ms")
		b.ReportMetric(ms(percentile(lose, 99)), "409-p99-ms")
		b.ReportMetric(ms(percentile(race, 50)), "race-p50-ms")
		cbTable(fmt.Sprintf("BenchmarkAcceptRace: %d agents race for each of %d chats", nAgents, rounds),
			[]string{"answer", "count", "p50 ms", "p99 ms", "max ms"}, [][]string{
				{"200 (winner)", strconv.Itoa(len(win)), f1(ms(percentile(win, 50))), f1(ms(percentile(win, 99))), f1(ms(percentile(win, 100)))},
				{"409 (lost)", strconv.Itoa(len(lose)), f1(ms(percentile(lose, 50))), f1(ms(percentile(lose, 99))), f1(ms(percentile(lose, 100)))},
				{"whole race (last answer)", strconv.Itoa(len(race)), f1(ms(percentile(race, 50))), f1(ms(percentile(race, 99))), f1(ms(percentile(race, 100)))},
			})
		t.s.stop()
	}
}

// ---------------------------------------------------------------------------------------------
// 3. History page latency in a tenant holding 100k messages.

// BenchmarkHistoryPage opens cbSizes.HistoryChats chats through the API and seeds
// cbSizes.HistoryMessages messages into them (equal shares) straight into the tenant's
// database through the MongoDB driver: documents shaped as the cell's store writes them (_id
// "<chatId>:<seq, 12 digits>", InsertMany in batches of 1,000), then each chat's lastSeq. It
// measures GET /api/chats/{id}/messages?since=S&limit=50 through the edge on the first chat twice:
// once when only that chat is seeded (a small tenant), once when the whole tenant is, with random
// S, plus the newest page (S = lastSeq-50), which is what a console opening a chat reads; and,
// as a baseline, one message read by _id straight from the database. The first cbOneByOne
// messages are inserted one InsertOne at a time, as the cell's append does, to compare with
// InsertMany (the case for batching inserts).
func BenchmarkHistoryPage(b *testing.B) {
	for range b.N {
		t := cbNewTenant(b, "acme")
		nChats := cbSizes.HistoryChats
		perChat := cbSizes.HistoryMessages / nChats
		visitors, err := t.openChats(nChats, 0, false)
		if err != nil {
			b.Fatalf("chats: %v", err)
		}
		env := cellEnv(b, cellPID(b, t.tn.ID))
		uri, dbName := env[cell.EnvMongoURI], env[cell.EnvDatabase]
		client, err := mongo.Connect(options.Client().ApplyURI(uri))
		if err != nil {
			b.Fatal(err)
		}
		defer client.Disconnect(context.Background())
		db := client.Database(dbName)
		ctx := context.Background()

		var seeded, seededOne int
		var seedTime, seedOneTime time.Duration
		// seed inserts the chat's perChat messages, the first oneByOne with InsertOne, the others
		// with InsertMany in batches of 1,000, then records the chat's lastSeq.
		seed := func(v cbVisitor, oneByOne int) {
			const batch = 1000
			start := time.Now()
			at := time.Now().UTC().Add(-time.Duration(perChat) * time.Second)
			docs := make([]any, 0, batch)
			flush := func() {
				if len(docs) == 0 {
					return
				}
				if _, err := db.Collection("messages").InsertMany(ctx, docs); err != nil {
					b.Fatalf("seeding: %v", err)
				}
				seeded += len(docs)
				docs = docs[:0]
			}
			for seq := int64(1); seq <= int64(perChat); seq++ {
				from := cell.Author{Role: cell.RoleVisitor, ID: v.ID, Name: "Vera"}
				if seq%2 == 0 {
					from = cell.Author{Role: cell.RoleAgent, ID: "agent-x", Name: "Agent X"}
				}
				docs = append(docs, cell.Message{ID: mongodb.MessageID(v.ChatID, seq), TenantID: t.tn.ID, ChatID: v.ChatID, Seq: seq,
					ClientMsgID: fmt.Sprintf("seed-%d", seq), From: from, CreatedAt: at.Add(time.Duration(seq) * time.Second),
					Body: fmt.Sprintf("Message %d of the seeded history, about as long as a real chat line.", seq)})
				if seq <= int64(oneByOne) {
					if _, err := db.Collection("messages").InsertOne(ctx, docs[0]); err != nil {
						b.Fatalf("seeding: %v", err)
					}
					docs = docs[:0]
					seeded++
					seededOne++
					if seq == int64(oneByOne) {
						seedOneTime = time.Since(start)
					}
					continue
				}
				if len(docs) == batch {
					flush()
				}
			}
			flush()
			if _, err := db.Collection("chats").UpdateOne(ctx, bson.D{{Key: "_id", Value: v.ChatID}}, bson.D{{Key: "$set", Value: bson.D{
				{Key: "lastSeq", Value: int64(perChat)}, {Key: "lastActivityAt", Value: at.Add(time.Duration(perChat) * time.Second)},
				{Key: "preview", Value: "seeded"}}}}); err != nil {
				b.Fatalf("lastSeq: %v", err)
			}
			seedTime += time.Since(start)
		}
		target := visitors[0].ChatID
		page := func(target string, since int64) (time.Duration, error) {
			var h struct {
				Messages []struct {
					Seq int64 `json:"seq"`
				} `json:"messages"`
				LastSeq int64 `json:"lastSeq"`
			}
			s := time.Now()
			err := t.api.expect(200, "GET", fmt.Sprintf("/api/chats/%s/messages?since=%d&limit=50", target, since), t.admin.AccessToken, nil, &h)
			d := time.Since(s)
			if err == nil && (len(h.Messages) != 50 || h.Messages[0].Seq != since+1 || h.Messages[49].Seq != since+50 || h.LastSeq != int64(perChat)) {
				err = fmt.Errorf("page since %d: %d messages, last %d", since, len(h.Messages), h.LastSeq)
			}
			return d, err
		}
		// direct reads one message of the target chat by _id straight from the database: the
		// store's point read, without the cell.
		direct := func(target string) (time.Duration, error) {
			id := mongodb.MessageID(target, 1+rand.Int64N(int64(perChat)))
			s := time.Now()
			err := db.Collection("messages").FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Err()
			return time.Since(s), err
		}
		type pages struct {
			random, newest, direct []time.Duration
			failed                 int
			firstErr               error
		}
		// sample runs f up to n times, or at least least times and then until budget is spent.
		// Failed requests (the cell's 10 s database timeout can strike on a scan-heavy page)
		// are counted, not timed.
		sample := func(p *pages, n, least int, budget time.Duration, f func() (time.Duration, error)) []time.Duration {
			var out []time.Duration
			start := time.Now()
			for i := 0; i < n && (i < least || time.Since(start) < budget); i++ {
				d, err := f()
				if err != nil {
					p.failed++
					if p.firstErr == nil {
						p.firstErr = err
					}
					continue
				}
				out = append(out, d)
			}
			sortDurations(out)
			return out
		}
		measure := func(target string) pages {
			var p pages
			sample(&p, 1, 1, 0, func() (time.Duration, error) { return page(target, int64(perChat-50)) }) // warm up
			p.failed, p.firstErr = 0, nil
			p.random = sample(&p, 200, 3, 30*time.Second, func() (time.Duration, error) { return page(target, rand.Int64N(int64(perChat-50+1))) })
			p.newest = sample(&p, 50, 3, 15*time.Second, func() (time.Duration, error) { return page(target, int64(perChat-50)) })
			p.direct = sample(&p, 500, 5, 10*time.Second, func() (time.Duration, error) { return direct(target) })
			if p.failed > 0 {
				b.Logf("%d history requests failed; first: %v", p.failed, p.firstErr)
			}
			return p
		}

		const cbOneByOne = 1000
		// The first chat's messages are the table's oldest rows, the last chat's the newest (as
		// an active chat's are): FerretDB's point reads scan the table until they find the row,
		// so where a chat's rows lie matters.
		seed(visitors[0], min(cbOneByOne, perChat))
		small := measure(target)
		smallTenant := seeded
		for _, v := range visitors[1:] {
			seed(v, 0)
		}
		recent := visitors[len(visitors)-1].ChatID
		old := measure(target)
		large := measure(recent)
		seedRate := float64(seeded-seededOne) / (seedTime - seedOneTime).Seconds()
		seedOneRate := float64(seededOne) / seedOneTime.Seconds()

		b.ReportMetric(ms(percentile(large.random, 50)), "page-p50-ms")
		b.ReportMetric(ms(percentile(large.random, 99)), "page-p99-ms")
		b.ReportMetric(ms(percentile(large.newest, 50)), "newest-page-p50-ms")
		b.ReportMetric(ms(percentile(small.random, 50)), "small-tenant-page-p50-ms")
		b.ReportMetric(ms(percentile(old.random, 50)), "oldest-chat-page-p50-ms")
		b.ReportMetric(ms(percentile(large.direct, 50)), "db-point-read-p50-ms")
		b.ReportMetric(seedRate, "seed-msgs/s")
		b.ReportMetric(seedOneRate, "insertone-msgs/s")
		b.ReportMetric(seedTime.Seconds(), "seed-s")
		row := func(label string, d []time.Duration) []string {
			return []string{label, strconv.Itoa(len(d)), f1(ms(percentile(d, 50))), f1(ms(percentile(d, 99))), f1(ms(percentile(d, 100)))}
		}
		failures := fmt.Sprintf("failed requests: small tenant %d, oldest chat %d, recent chat %d", small.failed, old.failed, large.failed)
		cbTable(fmt.Sprintf("BenchmarkHistoryPage: 50-message pages of one chat holding %d messages; seeding %d messages took %.1f s (InsertOne %.0f msgs/s for the first %d, InsertMany × 1,000 %.0f msgs/s); %s",
			perChat, seeded, seedTime.Seconds(), seedOneRate, seededOne, seedRate, failures),
			[]string{"tenant holds", "request", "count", "p50 ms", "p99 ms", "max ms"}, [][]string{
				append([]string{strconv.Itoa(smallTenant)}, row("random since", small.random)...),
				append([]string{strconv.Itoa(smallTenant)}, row("newest", small.newest)...),
				append([]string{strconv.Itoa(smallTenant)}, row("one message by _id, driver → FerretDB (no cell)", small.direct)...),
				append([]string{strconv.Itoa(seeded)}, row("oldest chat: random since", old.random)...),
				append([]string{strconv.Itoa(seeded)}, row("oldest chat: newest", old.newest)...),
				append([]string{strconv.Itoa(seeded)}, row("oldest chat: one message by _id (no cell)", old.direct)...),
				append([]string{strconv.Itoa(seeded)}, row("recent chat: random since", large.random)...),
				append([]string{strconv.Itoa(seeded)}, row("recent chat: newest", large.newest)...),
				append([]string{strconv.Itoa(seeded)}, row("recent chat: one message by _id (no cell)", large.direct)...),
			})
		t.s.stop()
	}
}

// ---------------------------------------------------------------------------------------------
// 4. Memory per open WebSocket.

// BenchmarkSocketMemory opens cbSizes.IdleSockets idle visitor WebSockets through the edge (40
// visitors, each with 50 sockets: a visitor with many tabs costs the cell the same as many
// visitors) and reports the growth of the cell's and of the control plane's (the edge's) resident
// memory per socket, read from /proc/<pid>/status after 3 s of settling, and the cell's own
// figures (Go heap in use, goroutines) from its /metrics.
func BenchmarkSocketMemory(b *testing.B) {
	for range b.N {
		n := cbSizes.IdleSockets
		t := cbNewTenant(b, "acme")
		pid := cellPID(b, t.tn.ID)
		addr := cellEnv(b, pid)[cell.EnvListenAddr]
		nVisitors := max(1, n/50)
		visitors := make([]cbVisitor, nVisitors)
		if err := cbEach(nVisitors, 4, func(i int) error {
			v, err := t.newVisitor(i/cbPerIP, false, false)
			visitors[i] = v
			return err
		}); err != nil {
			b.Fatal(err)
		}
		series := []string{"go_memstats_heap_inuse_bytes", "go_goroutines", "atende_cell_websockets", "go_memstats_sys_bytes"}
		time.Sleep(3 * time.Second)
		cell0, cp0, m0 := rssKiB(b, pid), rssKiB(b, t.s.cmd.Process.Pid), cellMetrics(addr, series...)
		conns := make([]*websocket.Conn, n)
		start := time.Now()
		if err := cbEach(n, 16, func(i int) error {
			conn, err := t.dialWS(visitors[i%nVisitors].Token)
			conns[i] = conn
			if err == nil {
				go func() { // read, so the library answers the server's pings
					for {
						if _, _, err := conn.ReadMessage(); err != nil {
							return
						}
					}
				}()
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}
		dialTook := time.Since(start)
		time.Sleep(3 * time.Second)
		cell1, cp1, m1 := rssKiB(b, pid), rssKiB(b, t.s.cmd.Process.Pid), cellMetrics(addr, series...)
		if open := m1["atende_cell_websockets"]; int(open) != n {
			b.Errorf("the cell counts %v open sockets, want %d", open, n)
		}
		for _, c := range conns {
			c.Close()
		}
		perCell := float64(cell1-cell0) / float64(n)
		perEdge := float64(cp1-cp0) / float64(n)
		heap := (m1["go_memstats_heap_inuse_bytes"] - m0["go_memstats_heap_inuse_bytes"]) / 1024 / float64(n)
		gor := (m1["go_goroutines"] - m0["go_goroutines"]) / float64(n)
		b.ReportMetric(perCell, "cell-KiB/socket")
		b.ReportMetric(perEdge, "edge-KiB/socket")
		b.ReportMetric(heap, "cell-heap-KiB/socket")
		b.ReportMetric(gor, "cell-goroutines/socket")
		b.ReportMetric(float64(n)/dialTook.Seconds(), "dials/s")
		cbTable(fmt.Sprintf("BenchmarkSocketMemory: %d idle visitor sockets through the edge (opened in %.1f s, %.0f/s)", n, dialTook.Seconds(), float64(n)/dialTook.Seconds()),
			[]string{"process", "RSS before MiB", "RSS after MiB", "KiB per socket", "note"}, [][]string{
				{"cell", f1(float64(cell0) / 1024), f1(float64(cell1) / 1024), f1(perCell),
					fmt.Sprintf("Go heap in use +%.1f KiB/socket, %.2f goroutines/socket", heap, gor)},
				{"control plane (edge)", f1(float64(cp0) / 1024), f1(float64(cp1) / 1024), f1(perEdge), "reverse proxy: 2 TCP connections + 2 goroutines per socket"},
			})
		t.s.stop()
	}
}
